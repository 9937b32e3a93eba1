package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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
// on its mirrors (health, repair) and shard sets (rebalance).
type topology struct {
	desc    string
	mirrors []namedMirror
	shards  []namedShards
}

type namedMirror struct {
	path string
	m    interface {
		Status() mirror.Status
		Repair(context.Context) (int, error)
	}
}

type namedShards struct {
	path  string
	names []string
	r     shard.Rebalancer
}

// buildStorage makes the backend a storage node describes, recursively.
func buildStorage(ctx context.Context, s config.Storage, path string, topo *topology, log *slog.Logger) (stowage.Backend, string, error) {
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
		return newS3(ctx, *s.S3, path)
	case s.Azure != nil:
		return newAzure(ctx, *s.Azure, path)
	case s.Mirror != nil:
		var copies []mirror.Copy
		var descs []string
		for i, c := range s.Mirror.Copies {
			b, d, err := buildStorage(ctx, c.Storage, fmt.Sprintf("%s.mirror.copies[%d]", path, i), topo, log)
			if err != nil {
				return nil, "", err
			}
			copies = append(copies, mirror.Copy{Name: c.Name, Backend: b})
			descs = append(descs, c.Name+": "+d)
		}
		m, err := mirror.New(copies, mirror.Options{WriteQuorum: s.Mirror.WriteQuorum, Timeout: time.Duration(s.Mirror.Timeout),
			Logger: log.With("mirror", path)})
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		topo.mirrors = append(topo.mirrors, namedMirror{path, m.(interface {
			Status() mirror.Status
			Repair(context.Context) (int, error)
		})})
		return m, "mirror of {" + strings.Join(descs, "; ") + "}", nil
	case s.Shard != nil:
		var shards []shard.Shard
		var descs, names []string
		for i, c := range s.Shard.Shards {
			b, d, err := buildStorage(ctx, c.Storage, fmt.Sprintf("%s.shard.shards[%d]", path, i), topo, log)
			if err != nil {
				return nil, "", err
			}
			shards = append(shards, shard.Shard{Name: c.Name, Backend: b})
			descs = append(descs, c.Name+": "+d)
			names = append(names, c.Name)
		}
		b, err := shard.New(shards)
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
		st.Mirrors = append(st.Mirrors, mgmt.MirrorStatus{Path: m.path, Status: m.m.Status()})
	}
	for _, s := range t.shards {
		st.ShardSets = append(st.ShardSets, mgmt.ShardSetStatus{Path: s.path, Shards: s.names})
	}
	return st
}

// Rebalance implements mgmt.Topology: every shard set, in turn.
func (t *topology) Rebalance(ctx context.Context, dryRun bool, progress func(shard.RebalanceProgress)) (shard.RebalanceProgress, error) {
	var total shard.RebalanceProgress
	for _, s := range t.shards {
		base := total
		p, err := s.r.Rebalance(ctx, dryRun, func(p shard.RebalanceProgress) {
			if progress != nil {
				progress(shard.RebalanceProgress{Total: base.Total + p.Total, Scanned: base.Scanned + p.Scanned, Misplaced: base.Misplaced + p.Misplaced,
					Moved: base.Moved + p.Moved, Bytes: base.Bytes + p.Bytes})
			}
		})
		total = shard.RebalanceProgress{Total: base.Total + p.Total, Scanned: base.Scanned + p.Scanned, Misplaced: base.Misplaced + p.Misplaced,
			Moved: base.Moved + p.Moved, Bytes: base.Bytes + p.Bytes}
		if err != nil {
			return total, fmt.Errorf("%s: %w", s.path, err)
		}
	}
	return total, nil
}

// repairAll runs every mirror's repair queue (a background job).
func (t *topology) repairAll(ctx context.Context) error {
	for _, m := range t.mirrors {
		if _, err := m.m.Repair(ctx); err != nil {
			return fmt.Errorf("%s: %w", m.path, err)
		}
	}
	return nil
}
