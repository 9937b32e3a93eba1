package mirror

import (
	"context"
	"sort"
	"sync"
	"time"
)

// RepairQueue keeps the keys on which a mirror's copies disagree (a copy
// missed a write, or kept an object a delete removed elsewhere), so that a
// repair survives a restart, and any node sharing the database can do it.
// meta/sqlite and meta/postgres implement it (table mirror_repairs); without
// one (Options.Queue nil) the queue lives in memory and is lost at exit.
//
// mirror names the mirror (its place in the storage configuration), so that
// several mirrors share one table.
type RepairQueue interface {
	// AddRepair queues key: from due on, every copy must hold it (present)
	// or none may (!present). Queuing a key already queued replaces its
	// wish and due time, and changes its seq.
	AddRepair(ctx context.Context, mirror, key string, present bool, due time.Time) error
	// DueRepairs claims up to limit repairs of mirror that are due at now,
	// earliest first, by postponing each to retry (so a failed repair is
	// tried again then, and another node does not take it meanwhile), and
	// calls fn with each, after the claim committed.
	DueRepairs(ctx context.Context, mirror string, now, retry time.Time, limit int, fn func(key string, present bool, seq int64)) error
	// RepairDone removes the repair of key, unless it was queued again
	// since DueRepairs returned it with seq.
	RepairDone(ctx context.Context, mirror, key string, seq int64) error
	// PendingRepairs counts the repairs queued for mirror.
	PendingRepairs(ctx context.Context, mirror string) (int, error)
}

// memQueue is the RepairQueue of a mirror without a database.
type memQueue struct {
	mu   sync.Mutex
	seq  int64
	keys map[string]map[string]*memRepair // mirror -> key -> repair
}

type memRepair struct {
	present bool
	due     time.Time
	seq     int64
}

func newMemQueue() *memQueue { return &memQueue{keys: map[string]map[string]*memRepair{}} }

func (q *memQueue) AddRepair(_ context.Context, mirror, key string, present bool, due time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.keys[mirror] == nil {
		q.keys[mirror] = map[string]*memRepair{}
	}
	q.seq++
	q.keys[mirror][key] = &memRepair{present, due, q.seq}
	return nil
}

func (q *memQueue) DueRepairs(_ context.Context, mirror string, now, retry time.Time, limit int, fn func(string, bool, int64)) error {
	q.mu.Lock()
	type due struct {
		key string
		r   memRepair
	}
	var out []due
	for k, r := range q.keys[mirror] {
		if !r.due.After(now) {
			out = append(out, due{k, *r})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].r.due.Equal(out[j].r.due) {
			return out[i].r.due.Before(out[j].r.due)
		}
		return out[i].key < out[j].key
	})
	if len(out) > limit {
		out = out[:limit]
	}
	for _, d := range out {
		q.keys[mirror][d.key].due = retry
	}
	q.mu.Unlock()
	for _, d := range out {
		fn(d.key, d.r.present, d.r.seq)
	}
	return nil
}

func (q *memQueue) RepairDone(_ context.Context, mirror, key string, seq int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.keys[mirror][key]; r != nil && r.seq == seq {
		delete(q.keys[mirror], key)
	}
	return nil
}

func (q *memQueue) PendingRepairs(_ context.Context, mirror string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.keys[mirror]), nil
}
