package stowage

import (
	"context"
	"io"
)

// ScrubObjectOf checks the object at key in b: through b's own ScrubObject
// when b is a Scrubber (it checks and repairs its copies), else by reading
// its one copy with CheckCopy. A read error, a key outage or the end of ctx
// is an error, never "corrupt".
func ScrubObjectOf(ctx context.Context, b Backend, key string, check func(io.Reader) error) (ScrubResult, error) {
	if sc, ok := b.(Scrubber); ok {
		return sc.ScrubObject(ctx, key, check)
	}
	res := ScrubResult{Copies: 1}
	rc, err := b.Open(ctx, key, 0)
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
//
// It is part of the storage contract (beside Scrubber), not of package
// scrub: the Backends that implement Scrubber (storage/crypt, mirror, shard)
// use it, and storage never imports the engine's packages.
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
