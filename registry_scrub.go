package stowage

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// ScrubOptions tune a scrub.
type ScrubOptions struct {
	// Progress, if set, is called as blobs are checked (done, total).
	Progress func(done, total int64)
}

// ScrubReport is what a scrub found. A blob is "ok" when every copy of it
// is right (after repairs), "degraded" when some copy was bad and could not
// be repaired but one is right, and "lost" when no copy is right.
type ScrubReport struct {
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
	Problems []ScrubProblem `json:"problems,omitempty"`
	Lost     int64          `json:"lost"`
	// Unreadable blobs could not be checked (storage or key unavailable).
	Unreadable int64  `json:"unreadable"`
	Degraded   int64  `json:"degraded"`
	Error      string `json:"error,omitempty"`
}

// ScrubProblem is one blob a scrub had something to say about.
type ScrubProblem struct {
	Digest Digest      `json:"digest"`
	Status string      `json:"status"` // repaired, degraded, lost, unreadable
	Result ScrubResult `json:"result"`
}

const settingLastScrub = "scrub.last"

// Scrub reads every live blob back from storage (through decryption, from
// every copy a mirror keeps), checks it against its digest and size, and
// repairs bad copies from a good one where the storage can (storage/mirror).
// It works online, one blob at a time, and records its report.
func (r *Registry) Scrub(ctx context.Context, opts ScrubOptions) (ScrubReport, error) {
	start := r.now()
	rep := ScrubReport{Started: start.UTC().Format(time.RFC3339)}
	var total int64
	if err := r.db.View(ctx, func(tx Tx) (err error) { total, _, err = tx.Usage().BlobTotals(); return err }); err != nil {
		return rep, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(int64, int64) {}
	}
	sc, _ := r.store.(Scrubber)
	var after Digest
	for {
		var batch []BlobRecord
		if err := r.db.View(ctx, func(tx Tx) (err error) {
			batch, err = tx.Blobs().BlobsInState(BlobLive, after, 256)
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
			res, err := r.scrubBlob(ctx, sc, b)
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
				rep.Problems = append(rep.Problems, ScrubProblem{Digest: b.Digest, Status: status, Result: res})
				r.log.Warn("scrub", "blob", b.Digest, "status", status, "missing", res.Missing, "corrupt", res.Corrupt, "repaired", res.Repaired, "errors", res.Errors)
			}
			progress(rep.Blobs, max(total, rep.Blobs))
		}
		after = batch[len(batch)-1].Digest
	}
	rep.Duration = r.now().Sub(start).Round(time.Millisecond).String()
	if b, err := json.Marshal(rep); err == nil {
		_ = r.db.Update(ctx, func(tx Tx) error { return tx.Settings().PutSetting(settingLastScrub, string(b), r.now()) })
	}
	return rep, nil
}

// LastScrub returns the report of the last scrub (ErrNotFound if none ran).
func (r *Registry) LastScrub(ctx context.Context) (ScrubReport, error) {
	var rep ScrubReport
	err := r.db.View(ctx, func(tx Tx) error {
		v, err := tx.Settings().GetSetting(settingLastScrub)
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(v), &rep)
	})
	return rep, err
}

func (r *Registry) scrubBlob(ctx context.Context, sc Scrubber, b BlobRecord) (ScrubResult, error) {
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
	key := BlobKey(b.Digest)
	if sc != nil {
		return sc.ScrubObject(ctx, key, check)
	}
	res := ScrubResult{Copies: 1}
	rc, err := r.store.Open(ctx, key, 0)
	if IsNotExist(err) {
		res.Missing = []string{"storage"}
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer rc.Close()
	good, err := CheckCopy(ctx, rc, check)
	switch {
	case err != nil:
		return res, err
	case !good:
		res.Corrupt = []string{"storage"}
		return res, nil
	}
	res.Good = 1
	return res, nil
}

// CheckCopy runs check (a Scrubber's) over r, the bytes of one stored copy
// of an object, and tells damage from an outage. It returns true when check
// passed; false and no error when check read the bytes and found them wrong
// (corrupt); and an error when the copy could not be checked: reading it
// failed, check failed for want of a key or of storage (CodeUnavailable),
// or ctx ended. An error is never damage: a scrub during a key or storage
// outage reports the object as unreadable, not corrupt or lost.
func CheckCopy(ctx context.Context, r io.Reader, check func(io.Reader) error) (bool, error) {
	rr := &readErrs{r: r}
	err := check(rr)
	switch {
	case err == nil:
		return true, nil
	case rr.err != nil:
		return false, rr.err
	case ctx.Err() != nil:
		return false, ctx.Err()
	case ErrorCodeOf(err) == CodeUnavailable:
		return false, err
	}
	return false, nil
}

// readErrs remembers the first error, other than io.EOF, of its reader.
type readErrs struct {
	r   io.Reader
	err error
}

func (r *readErrs) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}
