package mirror

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/stowage/stowage"
)

// Checking what a read returns, when the copies hold plain bytes.
//
// Under encryption (storage/crypt above the mirror) every segment is
// authenticated, and a damaged copy is found by the reader above, which
// reads again (stowage.WithReadAttempt). Without encryption nothing above
// checks the bytes a pull streams, so the mirror does, for the objects
// whose name says what their bytes must be: blob keys
// (blobs/<alg>/<xx>/<hex>) read from offset 0.
//
//  1. The first checkAhead bytes are read before Open returns. An object
//     that ends within them (manifests, configs, small layers) is checked
//     there: a damaged copy is reported and the next copy read instead, so
//     such a pull never sees the damage.
//  2. A longer object is hashed while it streams, and its last byte is
//     held back until the copy reached its end and the digest matched: on
//     a mismatch the read fails (the response is cut short, so a client
//     never gets wrong bytes under a digest), the copy is reported, and the
//     next read of the key tries the other copies first.
//
// A report is readFault's: logged, counted in the copy's CorruptFound (the
// status and stowage_storage_read_faults_total), and queued for a check
// (the verifier rewrites the bad copy from a good one).

// checkAhead is how many bytes of a checked read are read, and checked if
// the object ends there, before the first one is returned.
const checkAhead = 256 << 10

// CheckReads makes the mirror check the bytes of full reads of blob keys
// against their digest (see above). Only for copies holding plain bytes:
// under encryption the copies hold ciphertext, which the reader above
// authenticates.
func (b *Backend) CheckReads(on bool) { b.checkReads.Store(on) }

// blobDigest is the digest that names key, if key is a blob key
// (stowage.BlobKey) of an algorithm this build can compute.
func blobDigest(key string) (stowage.Digest, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "blobs" || parts[1] == "" || len(parts[3]) < 2 {
		return "", false
	}
	d := stowage.Digest(parts[1] + ":" + parts[3])
	if d.Validate() != nil || !d.Algorithm().Available() || stowage.BlobKey(d) != key {
		return "", false
	}
	return d, true
}

// suspectCopy returns the copy a read of key found damaged, if one was
// (and was not checked since).
func (b *Backend) suspectCopy(key string) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, ok := b.suspect[key]
	return i, ok
}

// setSuspect records (or, with i < 0, forgets) the copy of key found
// damaged; reads of key try it last.
func (b *Backend) setSuspect(key string, i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i < 0 {
		delete(b.suspect, key)
		return
	}
	if len(b.suspect) >= 10_000 {
		clear(b.suspect)
	}
	b.suspect[key] = i
}

// checked wraps r, a read of blob key d from offset 0, and reads ahead
// (step 1 above): a copy whose object ends within checkAhead bytes and does
// not match d is reported and the next copy is read.
func (b *Backend) checked(ctx context.Context, r *reader, d stowage.Digest) (io.ReadCloser, error) {
	var bad []string
	for {
		c := &checkedReader{b: b, ctx: ctx, r: r, want: d, h: d.Algorithm().Hash(), mem: make([]byte, 32<<10)}
		for c.hi < checkAhead && !c.done && c.err == nil {
			c.fill()
		}
		if !c.mismatch {
			if c.err != nil {
				r.Close()
				return nil, c.err
			}
			return c, nil
		}
		for _, i := range c.r.used {
			bad = append(bad, b.copies[i].Name)
		}
		if err := r.restart(); err != nil {
			r.Close()
			what := "damaged on " + strings.Join(bad, ", ")
			if len(r.lacks) > 0 {
				var names []string
				for _, i := range r.lacks {
					names = append(names, b.copies[i].Name)
				}
				what += "; missing on " + strings.Join(names, ", ")
			}
			return nil, &stowage.Error{Code: stowage.CodeUnavailable, Err: err,
				Message: fmt.Sprintf("no copy of %s could be read with the right bytes (%s): they are queued for a check; if no copy is good, restore the blob from a backup", r.key, what)}
		}
	}
}

// checkedReader hashes what it reads from r and holds the last byte back
// until r's end, where the digest must match (step 2 above).
type checkedReader struct {
	b        *Backend
	ctx      context.Context
	r        *reader
	want     stowage.Digest
	h        hash.Hash
	mem      []byte
	lo, hi   int  // mem[lo:hi]: read and hashed, not handed out yet
	done     bool // r ended and the digest matched: everything may go out
	mismatch bool // r ended and the digest did not match
	err      error
}

// fill reads more from r into mem.
func (c *checkedReader) fill() {
	if c.lo > 0 {
		c.hi = copy(c.mem, c.mem[c.lo:c.hi])
		c.lo = 0
	}
	if c.hi == len(c.mem) {
		m := make([]byte, 2*len(c.mem))
		copy(m, c.mem[:c.hi])
		c.mem = m
	}
	n, err := c.r.Read(c.mem[c.hi:])
	c.h.Write(c.mem[c.hi : c.hi+n])
	c.hi += n
	switch {
	case err == io.EOF:
		if got := stowage.Digest(string(c.want.Algorithm()) + ":" + hex.EncodeToString(c.h.Sum(nil))); got == c.want {
			c.done = true
			return
		}
		c.mismatch = true
		for _, i := range c.r.used {
			c.b.readFault(c.ctx, "corrupt", i, c.r.key)
		}
		c.err = &stowage.Error{Code: stowage.CodeUnavailable,
			Message: fmt.Sprintf("the bytes read for %s do not match its digest (damaged copy: %s); the read is cut short, the copy is queued for a check and the next read uses another copy", c.r.key, c.copyNames())}
	case err != nil:
		c.err = err
	}
}

func (c *checkedReader) copyNames() string {
	var names []string
	for _, i := range c.r.used {
		names = append(names, c.b.copies[i].Name)
	}
	return strings.Join(names, ", ")
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		avail := c.hi - c.lo
		if !c.done {
			avail-- // the last byte waits for the end and the digest
		}
		if avail > 0 {
			n := copy(p, c.mem[c.lo:c.lo+avail])
			c.lo += n
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.done {
			return 0, io.EOF
		}
		c.fill()
	}
}

func (c *checkedReader) Close() error { return c.r.Close() }
