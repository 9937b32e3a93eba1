// Package scrub reads every live blob back from storage (through
// decryption, from every copy a mirror keeps), checks it against its digest
// and size, and repairs bad copies from a good one where the storage can
// (stowage.Scrubber: storage/mirror). It reads the blob store
// (stowage.BlobTx) and records its last report as a setting.
package scrub

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/stowage/stowage"
)

// Options tune a scrub.
type Options struct {
	// Progress, if set, is called as blobs are checked (done, total).
	Progress func(done, total int64)
}

// Report is what a scrub found. A blob is "ok" when every copy of it is
// right (after repairs), "degraded" when some copy was bad and could not be
// repaired but one is right, and "lost" when no copy is right.
type Report struct {
	Started  string `json:"started"`
	Duration string `json:"duration"`
	Blobs    int64  `json:"blobs"`
	Bytes    int64  `json:"bytes"`
	Copies   int64  `json:"copiesChecked"`
	OK       int64  `json:"ok"`
	// Counts of copies, over all blobs.
	Missing  int64 `json:"missingCopies"`
	Corrupt  int64 `json:"corruptCopies"`
	Repaired int64 `json:"repairedCopies"`
	// Problems lists every blob that is not fully right after the scrub,
	// and every repair made.
	Problems []Problem `json:"problems,omitempty"`
	Lost     int64     `json:"lost"`
	// Unreadable blobs could not be checked (storage or key unavailable).
	Unreadable int64  `json:"unreadable"`
	Degraded   int64  `json:"degraded"`
	Error      string `json:"error,omitempty"`
}

// Problem is one blob a scrub had something to say about.
type Problem struct {
	Digest stowage.Digest      `json:"digest"`
	Status string              `json:"status"` // repaired, degraded, lost, unreadable
	Result stowage.ScrubResult `json:"result"`
}

const settingLast = "scrub.last"

// Runner scrubs one registry's storage.
type Runner struct {
	p stowage.Parts
}

// New returns the scrubber of a registry's parts (Registry.Parts).
func New(p stowage.Parts) *Runner { return &Runner{p: p} }

// Run scrubs every live blob. It works online, one blob at a time, and
// records its report (Last).
func (s *Runner) Run(ctx context.Context, opts Options) (Report, error) {
	start := s.p.Now()
	rep := Report{Started: start.UTC().Format(time.RFC3339)}
	var total int64
	if err := s.p.DB.View(ctx, func(tx stowage.Tx) (err error) { total, _, err = tx.Usage().BlobTotals(); return err }); err != nil {
		return rep, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(int64, int64) {}
	}
	var after stowage.Digest
	for {
		var batch []stowage.BlobRecord
		if err := s.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
			batch, err = tx.Blobs().BlobsInState(stowage.BlobLive, after, 256)
			return err
		}); err != nil {
			return rep, err
		}
		if len(batch) == 0 {
			break
		}
		for _, b := range batch {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			res, err := s.scrubBlob(ctx, b)
			if err != nil {
				// A key or storage outage is not damage: report and go on.
				res.Errors = append(res.Errors, err.Error())
			}
			rep.Blobs++
			rep.Bytes += b.Size
			rep.Copies += int64(res.Copies)
			rep.Missing += int64(len(res.Missing))
			rep.Corrupt += int64(len(res.Corrupt))
			rep.Repaired += int64(len(res.Repaired))
			bad := len(res.Missing) + len(res.Corrupt) - len(res.Repaired)
			status := ""
			switch {
			case res.Good == 0 && len(res.Repaired) == 0 && len(res.Errors) > 0:
				status, rep.Unreadable = "unreadable", rep.Unreadable+1
			case res.Good == 0 && len(res.Repaired) == 0:
				status, rep.Lost = "lost", rep.Lost+1
			case bad > 0 || len(res.Errors) > 0:
				status, rep.Degraded = "degraded", rep.Degraded+1
			case len(res.Repaired) > 0:
				status, rep.OK = "repaired", rep.OK+1
			default:
				rep.OK++
			}
			if status != "" {
				rep.Problems = append(rep.Problems, Problem{Digest: b.Digest, Status: status, Result: res})
				s.p.Log.Warn("scrub", "blob", b.Digest, "status", status, "missing", res.Missing, "corrupt", res.Corrupt, "repaired", res.Repaired, "errors", res.Errors)
			}
			progress(rep.Blobs, max(total, rep.Blobs))
		}
		after = batch[len(batch)-1].Digest
	}
	rep.Duration = s.p.Now().Sub(start).Round(time.Millisecond).String()
	if b, err := json.Marshal(rep); err == nil {
		_ = s.p.DB.Update(ctx, func(tx stowage.Tx) error { return tx.Settings().PutSetting(settingLast, string(b), s.p.Now()) })
	}
	return rep, nil
}

// Last returns the report of the last scrub (stowage.ErrNotFound if none
// ran).
func (s *Runner) Last(ctx context.Context) (Report, error) {
	var rep Report
	err := s.p.DB.View(ctx, func(tx stowage.Tx) error {
		v, err := tx.Settings().GetSetting(settingLast)
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(v), &rep)
	})
	return rep, err
}

func (s *Runner) scrubBlob(ctx context.Context, b stowage.BlobRecord) (stowage.ScrubResult, error) {
	check := func(rd io.Reader) error {
		var h hash.Hash
		switch b.Digest.Algorithm() {
		case digest.SHA256:
			h = sha256.New()
		default:
			if !b.Digest.Algorithm().Available() {
				return fmt.Errorf("digest algorithm %s is not available", b.Digest.Algorithm())
			}
			h = b.Digest.Algorithm().Hash()
		}
		n, err := io.Copy(h, rd)
		if err != nil {
			return err
		}
		if n != b.Size {
			return fmt.Errorf("%d bytes, want %d", n, b.Size)
		}
		if got := digest.NewDigest(b.Digest.Algorithm(), h); got != b.Digest {
			return fmt.Errorf("content digest %s", got)
		}
		return nil
	}
	return stowage.ScrubObjectOf(ctx, s.p.Store, stowage.BlobKey(b.Digest), check)
}
