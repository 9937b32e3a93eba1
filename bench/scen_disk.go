package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// diskWrite measures this machine's durable write limit where the registry
// keeps its data (--disk-dir, the server's data directory), in the same run
// and with the same sizes as push-mono: at concurrency 1 and 4, each worker
// writes iters files of --blob-mib MiB exactly as Stowage's file system
// storage writes a blob (storage/fs Put): space reserved with fallocate,
// 1 MiB writes, the disk write of every 1 MiB started as soon as it is
// written (sync_file_range, storage/fs's writebackStep), and an fsync before the next file, as a push
// does before it is acknowledged. A push can go no faster: push /
// disk_write is the fraction of the disk's speed the push reaches.
func (b *bench) diskWrite(ctx context.Context) error {
	if b.cfg.diskDir == "" {
		fmt.Fprintln(os.Stderr, "  (skipped: no --disk-dir)")
		return nil
	}
	dir, err := os.MkdirTemp(b.cfg.diskDir, "bench-disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, conc := range bigConcurrency {
		blobs := b.genBlobs(conc * b.cfg.iters)
		v, err := pushAll(ctx, conc, blobs, func(ctx context.Context, bl blob) error {
			return writeSynced(ctx, filepath.Join(dir, bl.digest[7:]), bl.data)
		})
		if err != nil {
			return err
		}
		b.res.add(fmt.Sprintf("disk_write_c%d_MBps", conc), v, "MB/s")
		forget(blobs)
	}
	return nil
}

// writebackStep is storage/fs's: how much is written before its disk write
// is started.
const writebackStep = 1 << 20

func writeSynced(ctx context.Context, path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_ = syscall.Fallocate(int(f.Fd()), 0, 0, int64(len(data)))
	started := 0
	for off := 0; off < len(data); off += 1 << 20 {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(off+1<<20, len(data))
		if _, err := f.Write(data[off:end]); err != nil {
			return err
		}
		if end-started >= writebackStep {
			const syncFileRangeWrite = 2
			syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(started), uintptr(end-started), syncFileRangeWrite, 0, 0)
			started = end
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}
