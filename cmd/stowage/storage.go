package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/mirror"
	"github.com/stowage/stowage/storage/shard"
)

// topology is the storage tree built from the configuration, with handles
// on its mirrors (health, repair), shard sets (rebalance) and buckets that
// keep incomplete multipart uploads (cleanup).
type topology struct {
	desc     string
	mirrors  []namedMirror
	shards   []namedShards
	aborters []namedAborter

	top stowage.Backend // the whole storage (encryption included), for checking a damaged object (setTop)

	mu        sync.Mutex
	lastAbort time.Time
	now       func() time.Time // nil: time.Now
}

// storageEnv is what buildStorage wires the storage tree to.
type storageEnv struct {
	log *slog.Logger
	db  stowage.DB // the mirrors' repair queue, the shards' blob check
}

// staleUploadAborter is a backend where a killed write leaves something
// behind until it is aborted (storage/s3: incomplete multipart uploads).
type staleUploadAborter interface {
	AbortStaleUploads(ctx context.Context, age time.Duration) (int, error)
}

type namedAborter struct {
	path string
	a    staleUploadAborter
}

// Incomplete multipart uploads older than staleUploadAge were left by a
// process killed in the middle of a write (no write of a layer lasts that
// long), and are aborted: at start, then every abortInterval.
const (
	staleUploadAge = 24 * time.Hour
	abortInterval  = time.Hour
)

type namedMirror struct {
	path string
	m    mirrorHandle
}

type mirrorHandle interface {
	Status() mirror.Status
	Repair(context.Context) (int, error)
	SetVerifier(func(ctx context.Context, key string) (stowage.ScrubResult, error))
	CheckReads(bool)
}

// checkPlainReads makes the mirrors check full reads of blobs against
// their digests (storage/mirror's verify.go): without encryption, nothing
// above them finds a copy's damaged bytes.
func (t *topology) checkPlainReads() {
	for _, m := range t.mirrors {
		m.m.CheckReads(true)
	}
}

// setTop tells the mirrors how to check an object a read found damaged on
// a copy: through the whole storage (decryption included) against its
// digest, as the scrub does, which rewrites the bad copies.
func (t *topology) setTop(top stowage.Backend) {
	t.top = top
	for _, m := range t.mirrors {
		m.m.SetVerifier(t.verifyObject)
	}
}

// verifyObject checks every copy of key against its digest (blob keys
// only: other objects are not content-addressed) and rewrites bad copies.
func (t *topology) verifyObject(ctx context.Context, key string) (stowage.ScrubResult, error) {
	d, ok := blobDigest(key)
	sc, isScrubber := t.top.(stowage.Scrubber)
	if !ok || !isScrubber || !d.Algorithm().Available() {
		return stowage.ScrubResult{}, nil
	}
	return sc.ScrubObject(ctx, key, func(r io.Reader) error {
		v := stowage.NewVerifyingReader(r, d, -1)
		if _, err := io.Copy(io.Discard, v); err != nil {
			return err
		}
		return nil
	})
}

type namedShards struct {
	path  string
	names []string
	r     shard.Rebalancer
}

// buildStorage makes the backend a storage node describes, recursively.
func buildStorage(ctx context.Context, s config.Storage, path string, topo *topology, env storageEnv) (stowage.Backend, string, error) {
	log := env.log
	switch {
	case s.Memory != nil:
		return mem.New(), "memory (lost at exit)", nil
	case s.Filesystem != nil:
		fsb, err := fs.New(s.Filesystem.Path)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		fsb.NoSync = !*s.Filesystem.Fsync
		// We hold the data directory's lock, so no write is in flight:
		// whatever is in tmp/ was cut short by a crash.
		if n, err := fsb.CleanTemp(0); err == nil && n > 0 {
			log.Info("removed temporary files left by an interrupted run", "storage", path, "count", n)
		}
		return fsb, s.Filesystem.Path, nil
	case s.S3 != nil:
		b, desc, err := newS3(ctx, *s.S3, path)
		if err == nil {
			topo.addAborter(ctx, path, b.(staleUploadAborter), log)
		}
		return b, desc, err
	case s.Azure != nil:
		return newAzure(ctx, *s.Azure, path)
	case s.Mirror != nil:
		var copies []mirror.Copy
		var descs []string
		for i, c := range s.Mirror.Copies {
			b, d, err := buildStorage(ctx, c.Storage, fmt.Sprintf("%s.mirror.copies[%d]", path, i), topo, env)
			if err != nil {
				return nil, "", err
			}
			copies = append(copies, mirror.Copy{Name: c.Name, Backend: b})
			descs = append(descs, c.Name+": "+d)
		}
		// The repair queue is in the database, under the mirror's place in
		// the configuration: it survives restarts, and any node works it.
		q, _ := env.db.(mirror.RepairQueue)
		m, err := mirror.New(copies, mirror.Options{WriteQuorum: s.Mirror.WriteQuorum, Timeout: time.Duration(s.Mirror.Timeout),
			Queue: q, Name: path, Logger: log.With("mirror", path)})
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		topo.mirrors = append(topo.mirrors, namedMirror{path, m.(mirrorHandle)})
		return m, "mirror of {" + strings.Join(descs, "; ") + "}", nil
	case s.Shard != nil:
		var shards []shard.Shard
		var descs, names []string
		for i, c := range s.Shard.Shards {
			b, d, err := buildStorage(ctx, c.Storage, fmt.Sprintf("%s.shard.shards[%d]", path, i), topo, env)
			if err != nil {
				return nil, "", err
			}
			shards = append(shards, shard.Shard{Name: c.Name, Backend: b})
			descs = append(descs, c.Name+": "+d)
			names = append(names, c.Name)
		}
		var opt shard.Options
		if env.db != nil {
			opt.Keep = keepBlob(env.db)
		}
		b, err := shard.New(shards, opt)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		topo.shards = append(topo.shards, namedShards{path, names, b.(shard.Rebalancer)})
		return b, "shards {" + strings.Join(descs, "; ") + "}", nil
	}
	return nil, "", fmt.Errorf("%s: no backend configured", path)
}

// Status implements mgmt.Topology.
func (t *topology) Status() mgmt.TopologyStatus {
	st := mgmt.TopologyStatus{Description: t.desc}
	for _, m := range t.mirrors {
		ms := m.m.Status()
		st.Mirrors = append(st.Mirrors, mgmt.MirrorStatus{Path: m.path, WriteQuorum: ms.WriteQuorum, Copies: copyStatus(ms.Copies),
			PendingRepairs: ms.PendingRepairs, Repaired: ms.Repaired, Lost: ms.Lost, LostObjects: ms.LostObjects})
	}
	for _, s := range t.shards {
		st.ShardSets = append(st.ShardSets, mgmt.ShardSetStatus{Path: s.path, Shards: s.names})
	}
	return st
}

func copyStatus(cs []mirror.CopyStatus) []mgmt.CopyStatus {
	out := make([]mgmt.CopyStatus, len(cs))
	for i, c := range cs {
		out[i] = mgmt.CopyStatus(c)
	}
	return out
}

// Rebalance implements mgmt.Topology: every shard set, in turn.
func (t *topology) Rebalance(ctx context.Context, dryRun bool, progress func(mgmt.RebalanceProgress)) (mgmt.RebalanceProgress, error) {
	var total mgmt.RebalanceProgress
	for _, s := range t.shards {
		base := total
		p, err := s.r.Rebalance(ctx, dryRun, func(p shard.RebalanceProgress) {
			if progress != nil {
				progress(mgmt.RebalanceProgress{Total: base.Total + p.Total, Scanned: base.Scanned + p.Scanned, Misplaced: base.Misplaced + p.Misplaced,
					Moved: base.Moved + p.Moved, Bytes: base.Bytes + p.Bytes})
			}
		})
		total = mgmt.RebalanceProgress{Total: base.Total + p.Total, Scanned: base.Scanned + p.Scanned, Misplaced: base.Misplaced + p.Misplaced,
			Moved: base.Moved + p.Moved, Bytes: base.Bytes + p.Bytes}
		if err != nil {
			return total, fmt.Errorf("%s: %w", s.path, err)
		}
	}
	return total, nil
}

// needsUpkeep reports whether the storage has background work (upkeep).
func (t *topology) needsUpkeep() bool { return len(t.mirrors) > 0 || len(t.aborters) > 0 }

// upkeep is the storage's background job, every minute on one node: it
// works every mirror's repair queue, and every abortInterval aborts the
// incomplete multipart uploads that killed writes left.
func (t *topology) upkeep(ctx context.Context) error {
	var errs []error
	for _, m := range t.mirrors {
		if _, err := m.m.Repair(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.path, err))
		}
	}
	t.mu.Lock()
	due := len(t.aborters) > 0 && t.clock().Sub(t.lastAbort) >= abortInterval
	if due {
		t.lastAbort = t.clock()
	}
	t.mu.Unlock()
	if due {
		for _, a := range t.aborters {
			if _, err := abortStale(ctx, a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (t *topology) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// addAborter registers a backend whose killed writes leave incomplete
// uploads, and aborts the stale ones now (a failure is logged: the next
// upkeep tries again).
func (t *topology) addAborter(ctx context.Context, path string, a staleUploadAborter, log *slog.Logger) {
	na := namedAborter{path, a}
	t.aborters = append(t.aborters, na)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := abortStale(ctx, na)
	if err != nil {
		log.Warn("could not abort the incomplete multipart uploads left by interrupted writes; retried hourly", "storage", path, "err", err)
	} else if n > 0 {
		log.Info("aborted incomplete multipart uploads left by interrupted writes", "storage", path, "count", n)
	}
	t.mu.Lock()
	t.lastAbort = t.clock()
	t.mu.Unlock()
}

func abortStale(ctx context.Context, a namedAborter) (int, error) {
	n, err := a.a.AbortStaleUploads(ctx, staleUploadAge)
	if err != nil {
		return n, fmt.Errorf("%s: abort stale multipart uploads: %w", a.path, err)
	}
	return n, nil
}

// keepBlob is the shards' Options.Keep: a blob object is kept while its
// row is live (its lease then extended, so the collector leaves it alone
// while it moves) or pending (a push is writing it); one whose row is gone
// or being deleted is not. Other objects are kept.
func keepBlob(db stowage.DB) func(ctx context.Context, key string) (bool, error) {
	return func(ctx context.Context, key string) (bool, error) {
		d, ok := blobDigest(key)
		if !ok {
			return true, nil
		}
		keep := false
		err := db.Update(ctx, func(tx stowage.Tx) error {
			keep = false
			b, err := tx.Blobs().GetBlob(d)
			if errors.Is(err, stowage.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			switch b.State {
			case stowage.BlobPending:
				keep = true
			case stowage.BlobLive:
				keep = true
				return tx.Blobs().TouchBlob(d, time.Now())
			}
			return nil
		})
		return keep, err
	}
}

// blobDigest is the digest whose blob key is key (stowage.BlobKey).
func blobDigest(key string) (stowage.Digest, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "blobs" || parts[1] == "" || len(parts[3]) < 2 {
		return "", false
	}
	d := stowage.Digest(parts[1] + ":" + parts[3])
	return d, stowage.BlobKey(d) == key
}
