// Package shard is a stowage.Backend that spreads objects over several
// backends (storage accounts, buckets, disks). Each object lives on the
// backend that ranks first for its key by rendezvous (highest random
// weight) hashing: the score of backend s for key k is a hash of (s's name,
// k). Adding a backend moves only the keys it now ranks first for, about
// 1/(M+1) of them, and each moved key's old place is the backend that now
// ranks second, so reads during a rebalance look there next.
package shard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/stowage/stowage"
)

// Shard is one backend of a shard set. Its name decides placement: renaming
// a shard moves objects (and needs a rebalance).
type Shard struct {
	Name    string
	Backend stowage.Backend
}

// Options tune a shard set.
type Options struct {
	// Keep, if set, tells Rebalance whether the object at key is still
	// wanted, and keeps it so for a while: for a blob, its row is live, and
	// its lease is extended, so the collector leaves it alone while it
	// moves. It is asked before an object is copied to its owner (an object
	// not kept is not moved) and again after (if the collector took it
	// meanwhile, the copy is deleted: it would be an orphan). nil: every
	// object is kept.
	Keep func(ctx context.Context, key string) (bool, error)
}

// Backend places objects on shards.
type Backend struct {
	shards []Shard
	keep   func(ctx context.Context, key string) (bool, error)
}

type appendBackend struct{ *Backend }

// New returns a sharded backend. It implements stowage.Appender if every
// shard does.
func New(shards []Shard, opt Options) (stowage.Backend, error) {
	if len(shards) == 0 {
		return nil, errors.New("shard: no shards")
	}
	names := map[string]bool{}
	all := true
	for _, s := range shards {
		if s.Name == "" || names[s.Name] {
			return nil, fmt.Errorf("shard: every shard needs a distinct name (placement depends on it); got %q twice or empty", s.Name)
		}
		names[s.Name] = true
		_, ok := s.Backend.(stowage.Appender)
		all = all && ok
	}
	b := &Backend{shards: shards, keep: opt.Keep}
	if all {
		return &appendBackend{b}, nil
	}
	return b, nil
}

func score(name, key string) uint64 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// rank returns the shard indexes for key, best first.
func (b *Backend) rank(key string) []int {
	type sc struct {
		i int
		s uint64
	}
	scores := make([]sc, len(b.shards))
	for i, s := range b.shards {
		scores[i] = sc{i, score(s.Name, key)}
	}
	sort.Slice(scores, func(x, y int) bool { return scores[x].s > scores[y].s })
	out := make([]int, len(scores))
	for i, s := range scores {
		out[i] = s.i
	}
	return out
}

// Owner returns the name of the shard key belongs on.
func (b *Backend) Owner(key string) string { return b.shards[b.owner(key)].Name }

func (b *Backend) owner(key string) int {
	best, bi := uint64(0), 0
	for i, s := range b.shards {
		if v := score(s.Name, key); i == 0 || v > best {
			best, bi = v, i
		}
	}
	return bi
}

// locate finds the shard holding key: its owner, else (during a rebalance)
// the others in rank order.
func (b *Backend) locate(ctx context.Context, key string, try func(s Shard) error) error {
	var errs []error
	for _, i := range b.rank(key) {
		err := try(b.shards[i])
		if err == nil {
			return nil
		}
		if !stowage.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("shard %s: %w", b.shards[i].Name, err))
			// The owner failing is an answer: do not report "not found"
			// because other shards (rightly) lack the object.
			return errors.Join(errs...)
		}
	}
	return fmt.Errorf("%s: %w", key, fs.ErrNotExist)
}

func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := b.locate(ctx, key, func(s Shard) (err error) {
		rc, err = s.Backend.Open(ctx, key, offset)
		return err
	})
	return rc, err
}

func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	var oi stowage.ObjectInfo
	err := b.locate(ctx, key, func(s Shard) (err error) {
		oi, err = s.Backend.Stat(ctx, key)
		return err
	})
	return oi, err
}

// Put writes to the key's owner.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return b.shards[b.owner(key)].Backend.Put(ctx, key, r, size)
}

// Delete deletes from every shard (a key may still be in its old place).
func (b *Backend) Delete(ctx context.Context, key string) error {
	errs := make([]error, len(b.shards))
	var wg sync.WaitGroup
	for i, s := range b.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Backend.Delete(ctx, key); err != nil {
				errs[i] = fmt.Errorf("shard %s: %w", s.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// List lists every shard (each key once, from the shard listed first).
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	seen := map[string]bool{}
	for _, s := range b.shards {
		err := s.Backend.List(ctx, prefix, func(oi stowage.ObjectInfo) error {
			if seen[oi.Key] {
				return nil
			}
			seen[oi.Key] = true
			return fn(oi)
		})
		if err != nil {
			return fmt.Errorf("shard %s: %w", s.Name, err)
		}
	}
	return nil
}

// where returns the shard holding the upload object key: its owner, or,
// for an upload started before a shard was added, the shard it was started
// on (the others in rank order). Uploads never move: Rebalance leaves them.
func (b *Backend) where(ctx context.Context, key string) (int, error) {
	var errs []error
	for _, i := range b.rank(key) {
		_, err := b.shards[i].Backend.Stat(ctx, key)
		if err == nil {
			return i, nil
		}
		if !stowage.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("shard %s: %w", b.shards[i].Name, err))
		}
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	return 0, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
}

// Append writes to the shard holding the upload: a new upload (off 0)
// starts on its owner, a later chunk goes where the upload is.
func (b *appendBackend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	i := b.owner(key)
	if off > 0 {
		at, err := b.where(ctx, key)
		if err != nil && !stowage.IsNotExist(err) {
			return 0, err
		}
		if err == nil {
			i = at
		}
		// Missing everywhere: the owner's Append says so.
	}
	return b.shards[i].Backend.(stowage.Appender).Append(ctx, key, off, r)
}

// Commit commits on the upload's shard (wherever it is) when that shard
// also owns dst (a rename); otherwise it copies the first size bytes to
// dst's owner, then removes the upload. (With M shards, M-1 in M chunked
// pushes take the copy.)
func (b *appendBackend) Commit(ctx context.Context, src, dst string, size int64) error {
	from, err := b.where(ctx, src)
	if err != nil {
		return err
	}
	to := b.owner(dst)
	if from == to {
		return b.shards[from].Backend.(stowage.Appender).Commit(ctx, src, dst, size)
	}
	rc, err := b.shards[from].Backend.Open(ctx, src, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	lr := &exact{r: io.LimitReader(rc, size), n: size}
	if err := b.shards[to].Backend.Put(ctx, dst, lr, size); err != nil {
		return err
	}
	return b.shards[from].Backend.Delete(ctx, src)
}

// exact fails at EOF unless exactly n bytes came.
type exact struct {
	r    io.Reader
	n    int64
	seen int64
}

func (e *exact) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.seen += int64(n)
	if err == io.EOF && e.seen != e.n {
		return n, fmt.Errorf("the upload object holds %d bytes, fewer than %d", e.seen, e.n)
	}
	return n, err
}

// ScrubObject checks key where it lives, passing down to a Scrubber shard
// (a mirror); an object found away from its owner is reported.
func (b *Backend) ScrubObject(ctx context.Context, key string, check func(io.Reader) error) (stowage.ScrubResult, error) {
	var res stowage.ScrubResult
	for n, i := range b.rank(key) {
		s := b.shards[i]
		if _, err := s.Backend.Stat(ctx, key); stowage.IsNotExist(err) {
			continue
		} else if err != nil {
			res.Copies++
			res.Errors = append(res.Errors, fmt.Sprintf("shard %s: %v", s.Name, err))
			return res, nil
		}
		if n > 0 {
			res.Errors = append(res.Errors, fmt.Sprintf("on shard %s, not on its owner %s: run `stowage storage rebalance`", s.Name, b.Owner(key)))
		}
		if sc, ok := s.Backend.(stowage.Scrubber); ok {
			sub, err := sc.ScrubObject(ctx, key, check)
			res.Merge(sub)
			return res, err
		}
		res.Copies++
		rc, err := s.Backend.Open(ctx, key, 0)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("shard %s: %v", s.Name, err))
			return res, nil
		}
		defer rc.Close()
		switch good, err := stowage.CheckCopy(ctx, rc, check); {
		case err != nil: // not checked (a read or key error), not damage
			res.Errors = append(res.Errors, fmt.Sprintf("shard %s: %v", s.Name, err))
		case good:
			res.Good++
		default:
			res.Corrupt = append(res.Corrupt, s.Name)
		}
		return res, nil
	}
	res.Copies = 1
	res.Missing = append(res.Missing, b.Owner(key))
	return res, nil
}

// Rebalancer is what New's result offers to move misplaced objects.
type Rebalancer interface {
	Rebalance(ctx context.Context, dryRun bool, progress func(RebalanceProgress)) (RebalanceProgress, error)
}

var _ Rebalancer = (*appendBackend)(nil)

// RebalanceProgress reports a rebalance as it goes.
type RebalanceProgress struct {
	Total     int64 `json:"total"`     // objects on all shards when the walk began
	Scanned   int64 `json:"scanned"`   // objects looked at
	Misplaced int64 `json:"misplaced"` // objects found away from their owner
	Moved     int64 `json:"moved"`     // of those, moved (or already present at the owner)
	Skipped   int64 `json:"skipped"`   // of those, left: deleted meanwhile (by the collector)
	Bytes     int64 `json:"bytes"`     // bytes copied
}

// Rebalance moves every object that is not on its owner there: copy to
// the owner, then delete from the old place. Reads keep working meanwhile
// (they look in the owner, then the old place). Upload data in progress is
// left where it is (it expires, or is committed to its owner: Append and
// Commit find it). With Options.Keep, only objects still wanted move, and
// a copy whose object the collector deleted meanwhile is removed again, so
// a rebalance racing garbage collection leaves no orphan. dryRun only
// counts. progress (may be nil) is called after each object.
func (b *Backend) Rebalance(ctx context.Context, dryRun bool, progress func(RebalanceProgress)) (RebalanceProgress, error) {
	var p RebalanceProgress
	type placed struct {
		from int
		key  string
	}
	var all []placed
	for from, s := range b.shards {
		if err := s.Backend.List(ctx, "", func(oi stowage.ObjectInfo) error {
			all = append(all, placed{from, oi.Key})
			return nil
		}); err != nil {
			return p, fmt.Errorf("shard %s: %w", s.Name, err)
		}
	}
	p.Total = int64(len(all))
	for _, o := range all {
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		p.Scanned++
		to := b.owner(o.key)
		if to != o.from && !strings.HasPrefix(o.key, "uploads/") { // stowage.UploadPrefix: uploads stay
			p.Misplaced++
			if !dryRun {
				n, moved, err := b.move(ctx, o.key, o.from, to)
				if err != nil {
					return p, err
				}
				p.Bytes += n
				if moved {
					p.Moved++
				} else {
					p.Skipped++
				}
			}
		}
		if progress != nil {
			progress(p)
		}
	}
	if progress != nil {
		progress(p)
	}
	return p, nil
}

// kept asks Options.Keep about key (true without one).
func (b *Backend) kept(ctx context.Context, key string) (bool, error) {
	if b.keep == nil {
		return true, nil
	}
	ok, err := b.keep(ctx, key)
	if err != nil {
		return false, fmt.Errorf("rebalance %s: %w", key, err)
	}
	return ok, nil
}

// move moves key from shard `from` to shard `to`. It reports the bytes
// copied, and false if the object was gone (or no longer wanted) and so
// not moved.
func (b *Backend) move(ctx context.Context, key string, from, to int) (int64, bool, error) {
	src, dst := b.shards[from], b.shards[to]
	if ok, err := b.kept(ctx, key); err != nil || !ok {
		return 0, false, err
	}
	oi, err := src.Backend.Stat(ctx, key)
	if stowage.IsNotExist(err) {
		return 0, false, nil // deleted meanwhile
	}
	if err != nil {
		return 0, false, fmt.Errorf("shard %s: %w", src.Name, err)
	}
	var copied int64
	if have, err := dst.Backend.Stat(ctx, key); err != nil || have.Size != oi.Size {
		rc, err := src.Backend.Open(ctx, key, 0)
		if stowage.IsNotExist(err) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("shard %s: %w", src.Name, err)
		}
		err = dst.Backend.Put(ctx, key, &exact{r: rc, n: oi.Size}, oi.Size)
		rc.Close()
		if err != nil {
			return 0, false, fmt.Errorf("move %s to shard %s: %w", key, dst.Name, err)
		}
		copied = oi.Size
		// The collector may have deleted the object (on every shard)
		// while it was being copied: then the copy is an orphan.
		ok, err := b.kept(ctx, key)
		if err != nil {
			return copied, false, err
		}
		if !ok {
			if err := dst.Backend.Delete(ctx, key); err != nil {
				return copied, false, fmt.Errorf("shard %s: remove the copy of %s, deleted while it moved: %w", dst.Name, key, err)
			}
			return copied, false, nil
		}
	}
	if err := src.Backend.Delete(ctx, key); err != nil {
		return copied, true, fmt.Errorf("shard %s: %w", src.Name, err)
	}
	return copied, true, nil
}
