// Package mirror is a stowage.Backend that keeps every object on several
// backends (geo-redundant storage: two disks, two storage accounts, a disk
// and S3). Writes go to all copies and succeed when a write quorum of them
// did; reads come from the healthiest copy and fail over, even in the middle
// of a read, when a copy errors, times out or lacks the object. Every
// operation on one copy is bounded by the timeout: a stalled copy is skipped
// and counted as failed. Copies that missed a write are queued for repair
// (in the database, with Options.Queue), and Repair (run in the background)
// copies what they lack from a good copy; Scrub checks every copy.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
)

// Copy is one backend of a mirror, with a name for status and logs.
type Copy struct {
	Name    string
	Backend stowage.Backend
}

// Options tune a mirror.
type Options struct {
	// WriteQuorum is how many copies a write must reach (default: all).
	WriteQuorum int
	// Timeout bounds every operation on one copy (a Stat, a Delete, opening
	// an object, a listing between two objects) and how long a write may
	// wait for one slow copy, before the copy counts as failed (default 10s).
	Timeout time.Duration
	// Queue keeps the repair queue, under Name (default: in memory, lost
	// at exit, and seen by this process only).
	Queue  RepairQueue
	Name   string
	Logger *slog.Logger
}

// retryAfter is how long a claimed repair waits before it is tried again
// (if it failed, or its node died while repairing).
const retryAfter = 2 * time.Minute

// Health states of a copy.
const (
	Healthy  = "healthy"  // its last operation succeeded
	Degraded = "degraded" // recent operations failed
	Down     = "down"     // 3 or more operations in a row failed
)

type copyState struct {
	Copy
	mu        sync.Mutex
	fails     int // consecutive failures
	lastErr   string
	lastErrAt time.Time
	lastOK    time.Time
	app       stowage.Appender // nil if the copy cannot append
	missing   int64            // reads that found the object missing here (once per object a minute)
	corrupt   int64            // reads whose bytes from here a reader above found wrong (likewise)
}

func (c *copyState) ok() {
	c.mu.Lock()
	c.fails, c.lastOK = 0, time.Now()
	c.mu.Unlock()
}

func (c *copyState) fail(err error) {
	c.mu.Lock()
	c.fails++
	c.lastErr, c.lastErrAt = err.Error(), time.Now()
	c.mu.Unlock()
}

func (c *copyState) state() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.fails == 0:
		return Healthy, 0
	case c.fails < 3:
		return Degraded, 1
	}
	return Down, 2
}

// Backend is a mirror over several copies.
type Backend struct {
	copies  []*copyState
	quorum  int
	timeout time.Duration
	log     *slog.Logger

	queue RepairQueue
	name  string // in the queue

	mu       sync.Mutex
	unsaved  map[string]bool // repairs the queue refused (the database was down), kept until it takes them
	pending  int             // the queue's length, as last counted
	repaired int64
	served   map[string]int       // the copy that last served a read of a key (to name the copy a re-read blames)
	faults   map[string]time.Time // read faults (kind, copy, key) and when they were last reported
	verify   func(ctx context.Context, key string) (stowage.ScrubResult, error)
	suspect  map[string]int // keys whose bytes a read found damaged on a copy, and that copy (read last until checked)

	lostChecked time.Time // when recheckLost last ran
	lostNames   []string  // Status's list of lost objects, as read at lostNamesAt
	lostNamesAt time.Time

	checkReads atomic.Bool // check full reads of blob keys against their digest (verify.go)
}

// verifySuffix names, in the repair queue, the mirror's keys whose copies
// must be checked byte by byte (a read found one copy's bytes wrong): the
// queue keeps only "present", so they are kept under the mirror's name with
// this suffix, and Repair checks them with the verifier (SetVerifier).
const verifySuffix = "#verify"

// faultInterval is how often one fault (kind, copy, object) is logged,
// counted and queued again: a burst of pulls of a damaged object costs one
// log line and one database write, not one each.
const faultInterval = time.Minute

// SetVerifier sets how Repair checks the copies of a key that a read found
// damaged: it checks every copy's bytes (through the layers above the
// mirror: decryption, the digest) and rewrites the bad ones from a good one,
// as ScrubObject of the whole storage does. Without one, such keys wait in
// the queue (and the weekly scrub finds them).
func (b *Backend) SetVerifier(v func(ctx context.Context, key string) (stowage.ScrubResult, error)) {
	b.mu.Lock()
	b.verify = v
	b.mu.Unlock()
}

// readFault reports a fault a read found on copy i: logged, counted and
// queued for repair, once per (kind, copy, key) per faultInterval.
func (b *Backend) readFault(ctx context.Context, kind string, i int, key string) {
	c := b.copies[i]
	if kind == "corrupt" {
		b.setSuspect(key, i)
	}
	b.mu.Lock()
	id := kind + "\x00" + c.Name + "\x00" + key
	now := time.Now()
	if at, ok := b.faults[id]; ok && now.Sub(at) < faultInterval {
		b.mu.Unlock()
		return
	}
	if len(b.faults) >= 10_000 {
		clear(b.faults)
	}
	b.faults[id] = now
	b.mu.Unlock()
	c.mu.Lock()
	if kind == "missing" {
		c.missing++
	} else {
		c.corrupt++
	}
	c.mu.Unlock()
	if kind == "missing" {
		b.log.Warn("a storage copy lacks an object a read needed; queued for repair", "copy", c.Name, "key", key)
		b.noteRepair(ctx, key, true)
		return
	}
	b.log.Warn("a storage copy returned damaged bytes; reads of the object now use another copy; queued for a check and repair", "copy", c.Name, "key", key)
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	defer cancel()
	if err := b.queue.AddRepair(qctx, b.name+verifySuffix, key, true, now); err != nil {
		b.log.Error("could not queue a storage check; the scrub finds the damaged copy", "key", key, "err", err)
	}
}

// noteServed records that copy i served a read of key (bounded).
func (b *Backend) noteServed(key string, i int) {
	b.mu.Lock()
	if len(b.served) >= 10_000 {
		clear(b.served)
	}
	b.served[key] = i
	b.mu.Unlock()
}

// appendBackend adds the Appender capability when every copy has it.
type appendBackend struct{ *Backend }

// New returns a mirror over copies. It implements stowage.Appender if every
// copy does.
func New(copies []Copy, opt Options) (stowage.Backend, error) {
	if len(copies) == 0 {
		return nil, errors.New("mirror: no copies")
	}
	b := &Backend{quorum: opt.WriteQuorum, timeout: opt.Timeout, log: opt.Logger,
		queue: opt.Queue, name: opt.Name, unsaved: map[string]bool{},
		served: map[string]int{}, faults: map[string]time.Time{}, suspect: map[string]int{}, lostChecked: time.Now()}
	if b.queue == nil {
		b.queue = newMemQueue()
	}
	if b.name == "" {
		b.name = "storage"
	}
	if b.quorum <= 0 {
		b.quorum = len(copies)
	}
	if b.quorum > len(copies) {
		return nil, fmt.Errorf("mirror: write quorum %d is more than the %d copies", b.quorum, len(copies))
	}
	if b.timeout <= 0 {
		b.timeout = 10 * time.Second
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	all := true
	names := map[string]bool{}
	for i, c := range copies {
		if c.Name == "" {
			c.Name = fmt.Sprint("copy", i+1)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("mirror: two copies are named %q", c.Name)
		}
		names[c.Name] = true
		cs := &copyState{Copy: c}
		cs.app, _ = c.Backend.(stowage.Appender)
		all = all && cs.app != nil
		b.copies = append(b.copies, cs)
	}
	if all {
		return &appendBackend{b}, nil
	}
	return b, nil
}

// readOrder lists copies healthiest first (then in configured order),
// rotated by the read attempt: attempt n starts at the nth copy.
func (b *Backend) readOrder(attempt int) []int {
	idx := make([]int, len(b.copies))
	rank := make([]int, len(b.copies))
	for i, c := range b.copies {
		idx[i] = i
		_, rank[i] = c.state()
	}
	sort.SliceStable(idx, func(x, y int) bool { return rank[idx[x]] < rank[idx[y]] })
	if attempt > 0 {
		a := attempt % len(idx)
		idx = append(idx[a:], idx[:a]...)
	}
	return idx
}

// noteRepair queues key for repair: every copy must hold it (present), or
// none may. It never fails the write that found the need: if the queue
// cannot take it, it waits in memory for the next Repair.
func (b *Backend) noteRepair(ctx context.Context, key string, present bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	defer cancel()
	if err := b.queue.AddRepair(ctx, b.name, key, present, time.Now()); err != nil {
		b.log.Error("could not queue a storage repair; keeping it in memory until the database takes it", "key", key, "err", err)
		b.mu.Lock()
		b.unsaved[key] = present
		b.mu.Unlock()
	}
}

// bounded runs op, an operation on copy c, giving up after the timeout: a
// copy that does not answer counts as failed (op goes on in the background
// with its context cancelled, and what it returns late is dropped).
func (b *Backend) bounded(ctx context.Context, c *copyState, what string, op func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(cctx) }()
	select {
	case err := <-done:
		return err
	case <-cctx.Done():
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("copy %s: %s took more than %v", c.Name, what, b.timeout)
	}
}

// statCopy is Stat on copy i, bounded by the timeout.
func (b *Backend) statCopy(ctx context.Context, i int, key string) (stowage.ObjectInfo, error) {
	c := b.copies[i]
	type result struct {
		oi  stowage.ObjectInfo
		err error
	}
	ch := make(chan result, 1)
	err := b.bounded(ctx, c, "stat of "+key, func(ctx context.Context) error {
		oi, err := c.Backend.Stat(ctx, key)
		ch <- result{oi, err}
		return err
	})
	if err != nil {
		return stowage.ObjectInfo{}, err
	}
	return (<-ch).oi, nil
}

// deleteCopy is Delete on copy i, bounded by the timeout.
func (b *Backend) deleteCopy(ctx context.Context, i int, key string) error {
	c := b.copies[i]
	return b.bounded(ctx, c, "delete of "+key, func(ctx context.Context) error { return c.Backend.Delete(ctx, key) })
}

// fnError is an error returned by a List caller's fn: it ends the listing,
// and says nothing about the copy.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// listCopy is List on copy i, bounded by the timeout between two objects
// (a long listing is fine as long as it moves). fn runs in the caller's
// goroutine; its errors come back as fnError.
func (b *Backend) listCopy(ctx context.Context, i int, prefix string, fn func(stowage.ObjectInfo) error) error {
	c := b.copies[i]
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan stowage.ObjectInfo)
	done := make(chan error, 1)
	go func() {
		done <- c.Backend.List(cctx, prefix, func(oi stowage.ObjectInfo) error {
			select {
			case items <- oi:
				return nil
			case <-cctx.Done():
				return cctx.Err()
			}
		})
	}()
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	for {
		select {
		case oi := <-items:
			if err := fn(oi); err != nil {
				return fnError{err}
			}
			t.Reset(b.timeout)
		case err := <-done:
			return err
		case <-t.C:
			return fmt.Errorf("copy %s: listing %s gave nothing for more than %v", c.Name, prefix, b.timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// unavailable is the error when no copy could answer.
func unavailable(op, key string, errs []error) error {
	return &stowage.Error{Code: stowage.CodeUnavailable, Err: errors.Join(errs...),
		Message: fmt.Sprintf("storage unavailable: no copy could %s %s; the other copies are down or timed out", op, key)}
}

// openCopy opens key on copy i, giving up after the timeout.
func (b *Backend) openCopy(ctx context.Context, i int, key string, off int64) (io.ReadCloser, error) {
	c := b.copies[i]
	cctx, cancel := context.WithCancel(ctx)
	type result struct {
		rc  io.ReadCloser
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rc, err := c.Backend.Open(cctx, key, off)
		ch <- result{rc, err}
	}()
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			cancel()
			return nil, r.err
		}
		return &cancelCloser{r.rc, cancel}, nil
	case <-t.C:
		cancel()
		go func() {
			if r := <-ch; r.rc != nil {
				r.rc.Close()
			}
		}()
		return nil, fmt.Errorf("copy %s: opening %s took more than %v", c.Name, key, b.timeout)
	}
}

type cancelCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelCloser) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Open reads from the healthiest copy that has the object, failing over to
// the next on an error, a timeout or a missing object, and again if the
// copy fails in the middle of the read.
func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	attempt := stowage.ReadAttempt(ctx)
	if attempt > 0 {
		// A reader above (storage/crypt) found the bytes of the copy that
		// served the previous attempt wrong, and reads again.
		b.mu.Lock()
		i, ok := b.served[key]
		b.mu.Unlock()
		if ok {
			b.readFault(ctx, "corrupt", i, key)
		}
	}
	order := b.readOrder(attempt)
	if strings.HasPrefix(key, "uploads/") { // stowage.UploadPrefix
		order = b.longestFirst(ctx, key, order)
	}
	if s, ok := b.suspectCopy(key); ok && attempt == 0 {
		// A read found this copy's bytes damaged: the others first.
		order = append(slices.DeleteFunc(order, func(i int) bool { return i == s }), s)
	}
	r := &reader{b: b, ctx: ctx, key: key, off: offset, order: order}
	if err := r.openNext(); err != nil {
		return nil, err
	}
	if offset == 0 && b.checkReads.Load() {
		if d, ok := blobDigest(key); ok {
			return b.checked(ctx, r, d)
		}
	}
	return r, nil
}

// longestFirst reorders copies by the size of the upload object key, most
// bytes first: a copy that missed chunks of an upload (it sits out the rest
// of it) holds a shorter object, whose bytes end too early for a reader of
// the upload (storage/crypt reads its last segment back).
func (b *Backend) longestFirst(ctx context.Context, key string, order []int) []int {
	sizes := make([]int64, len(b.copies))
	var wg sync.WaitGroup
	for i := range b.copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sizes[i] = -1
			if oi, err := b.statCopy(ctx, i, key); err == nil {
				sizes[i] = oi.Size
			}
		}()
	}
	wg.Wait()
	out := slices.Clone(order)
	sort.SliceStable(out, func(x, y int) bool { return sizes[out[x]] > sizes[out[y]] })
	return out
}

type reader struct {
	b     *Backend
	ctx   context.Context
	key   string
	off   int64
	order []int
	pos   int // next copy in order to try
	cur   int
	rc    io.ReadCloser
	errs  []error
	nf    int   // copies that do not have the object
	lack  []int // which, not reported yet
	lacks []int // all of them
	found bool  // some copy opened the object
	used  []int // copies that served bytes since the read (re)started
}

// restart reads the object again from offset 0, from the copies not tried
// yet (the ones that served so far returned damaged bytes).
func (r *reader) restart() error {
	r.rc.Close()
	r.rc = errReader{io.ErrClosedPipe}
	r.off, r.used = 0, nil
	return r.openNext()
}

// openNext opens the next copy in order at r.off.
func (r *reader) openNext() error {
	for r.pos < len(r.order) {
		i := r.order[r.pos]
		r.pos++
		c := r.b.copies[i]
		rc, err := r.b.openCopy(r.ctx, i, r.key, r.off)
		if err == nil {
			c.ok()
			r.rc, r.cur, r.found = rc, i, true
			r.used = append(r.used, i)
			r.b.noteServed(r.key, i)
			for _, j := range r.lack { // an earlier copy lacks it
				r.b.readFault(r.ctx, "missing", j, r.key)
			}
			r.lack = nil
			return nil
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if stowage.IsNotExist(err) {
			r.nf++
			r.lack = append(r.lack, i)
			r.lacks = append(r.lacks, i)
			continue
		}
		c.fail(err)
		r.errs = append(r.errs, fmt.Errorf("copy %s: %w", c.Name, err))
		r.b.log.Warn("storage copy failed a read; trying another copy", "copy", c.Name, "key", r.key, "err", err)
	}
	if r.nf == len(r.order) {
		return fmt.Errorf("%s: %w", r.key, fs.ErrNotExist)
	}
	// Another copy had the object (its bytes were damaged, or it failed
	// in the middle): the ones that lack it are missing it, though nothing
	// could be served from them.
	if r.found {
		for _, j := range r.lack {
			r.b.readFault(r.ctx, "missing", j, r.key)
		}
		r.lack = nil
	}
	return unavailable("read", r.key, r.errs)
}

func (r *reader) Read(p []byte) (int, error) {
	for {
		n, err := r.rc.Read(p)
		r.off += int64(n)
		if err == nil || err == io.EOF || r.ctx.Err() != nil {
			return n, err
		}
		// The copy failed in the middle: go on from another one.
		c := r.b.copies[r.cur]
		c.fail(err)
		r.errs = append(r.errs, fmt.Errorf("copy %s: %w", c.Name, err))
		r.b.log.Warn("storage copy failed in the middle of a read; going on from another copy", "copy", c.Name, "key", r.key, "offset", r.off, "err", err)
		r.rc.Close()
		if oerr := r.openNext(); oerr != nil {
			r.rc = errReader{oerr}
			return n, oerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *reader) Close() error { return r.rc.Close() }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
func (e errReader) Close() error             { return nil }

// Stat answers from the first copy that has the object.
func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	var errs []error
	nf := 0
	for _, i := range b.readOrder(0) {
		c := b.copies[i]
		oi, err := b.statCopy(ctx, i, key)
		if err == nil {
			c.ok()
			return oi, nil
		}
		if stowage.IsNotExist(err) {
			nf++
			continue
		}
		if ctx.Err() != nil {
			return stowage.ObjectInfo{}, ctx.Err()
		}
		c.fail(err)
		errs = append(errs, fmt.Errorf("copy %s: %w", c.Name, err))
	}
	if nf == len(b.copies) {
		return stowage.ObjectInfo{}, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	if nf > 0 && len(errs) == 0 {
		return stowage.ObjectInfo{}, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	return stowage.ObjectInfo{}, unavailable("stat", key, errs)
}

// fanOut streams r to one write per target copy, each in its own goroutine
// reading from a pipe, in chunks. A copy whose write fails, or stalls for
// longer than the timeout, is dropped and the others go on. It returns each
// target's error (nil: success); if r fails, every write is aborted with
// r's error, which is returned too.
func (b *Backend) fanOut(ctx context.Context, targets []int, r io.Reader, write func(ctx context.Context, i int, r io.Reader) error) ([]error, error) {
	type lane struct {
		ch     chan []byte
		pw     *io.PipeWriter
		cancel context.CancelFunc
		dead   bool
	}
	errs := make([]error, len(targets))
	lanes := make([]*lane, len(targets))
	var final error // r's error, set before the lanes' channels close
	var wg sync.WaitGroup
	for k, i := range targets {
		cctx, cancel := context.WithCancel(ctx)
		pr, pw := io.Pipe()
		l := &lane{ch: make(chan []byte, 4), pw: pw, cancel: cancel}
		lanes[k] = l
		wg.Add(2)
		go func() { // the copy's write, reading the pipe
			defer wg.Done()
			defer cancel()
			err := write(cctx, i, pr)
			errs[k] = err
			pr.CloseWithError(errors.Join(err, io.ErrClosedPipe)) // unblocks the feeder
		}()
		go func() { // feeds the pipe from the lane's queue
			defer wg.Done()
			for chunk := range l.ch {
				if _, err := pw.Write(chunk); err != nil {
					for range l.ch {
					}
					return
				}
			}
			pw.CloseWithError(final) // nil: EOF
		}()
	}
	for {
		buf := make([]byte, 256<<10)
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			for k, l := range lanes {
				if l.dead {
					continue
				}
				select {
				case l.ch <- buf[:n]:
				case <-time.After(b.timeout):
					l.dead = true
					l.cancel()
					l.pw.CloseWithError(fmt.Errorf("copy %s: a write stalled for more than %v", b.copies[targets[k]].Name, b.timeout))
					close(l.ch)
				}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			final = err
			break
		}
	}
	for _, l := range lanes {
		if !l.dead {
			close(l.ch)
		}
	}
	wg.Wait()
	return errs, final
}

// all returns every copy, in order.
func (b *Backend) all() []int {
	out := make([]int, len(b.copies))
	for i := range out {
		out[i] = i
	}
	return out
}

// settle records the outcome of a write to targets and decides it: nil if
// at least the quorum succeeded. errs[k] is target k's error; behind[k]
// marks a target that is healthy but lacks earlier bytes of an upload, so
// it could not take part (not a failure of the copy). If queue is set, a
// key some target missed is queued for repair.
func (b *Backend) settle(ctx context.Context, op, key string, targets []int, errs []error, behind []bool, queue bool) error {
	okN, behindN := 0, 0
	var failed []error
	for k, i := range targets {
		c := b.copies[i]
		switch {
		case errs[k] == nil:
			c.ok()
			okN++
		case behind != nil && behind[k]:
			c.ok() // it answered: it is only behind
			behindN++
			failed = append(failed, fmt.Errorf("copy %s lacks earlier bytes of the upload: %w", c.Name, errs[k]))
		default:
			c.fail(errs[k])
			failed = append(failed, fmt.Errorf("copy %s: %w", c.Name, errs[k]))
		}
	}
	if okN >= b.quorum {
		if len(failed) > 0 {
			if queue {
				b.log.Warn("a storage copy missed a write; it is queued for repair", "op", op, "key", key, "err", errors.Join(failed...))
				b.noteRepair(ctx, key, true)
			} else {
				b.log.Warn("a storage copy missed a write", "op", op, "key", key, "err", errors.Join(failed...))
			}
		}
		return nil
	}
	msg := fmt.Sprintf("storage unavailable: the %s of %s reached %d of %d copies, and the write quorum is %d; nothing was acknowledged, retry when the copies are back", op, key, okN, len(targets), b.quorum)
	if okN+(len(targets)-okN-behindN) < b.quorum {
		// Even with every failing copy back, the copies that missed
		// earlier chunks keep this upload below the quorum.
		msg = fmt.Sprintf("storage unavailable: the %s of %s reached %d of %d copies, and the write quorum is %d; %d copies lack earlier bytes of this upload, so it cannot reach the quorum: start the upload again", op, key, okN, len(targets), b.quorum, behindN)
	}
	return &stowage.Error{Code: stowage.CodeUnavailable, Err: errors.Join(failed...), Message: msg}
}

// Put writes to every copy at once and succeeds when the quorum did. An
// error from r aborts every copy's write (nothing becomes visible).
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	targets := b.all()
	errs, rerr := b.fanOut(ctx, targets, r, func(ctx context.Context, i int, r io.Reader) error {
		return b.copies[i].Backend.Put(ctx, key, r, size)
	})
	if rerr != nil {
		return rerr
	}
	return b.settle(ctx, "write", key, targets, errs, nil, true)
}

// Delete deletes on every copy at once. Copies that fail (or do not answer
// within the timeout) keep the object until Repair deletes it (or the
// collector's orphan sweep does); it fails only if no copy could delete it.
func (b *Backend) Delete(ctx context.Context, key string) error {
	errs := make([]error, len(b.copies))
	var wg sync.WaitGroup
	for i := range b.copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.deleteCopy(ctx, i, key)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var failed []error
	for i, c := range b.copies {
		if errs[i] != nil {
			c.fail(errs[i])
			failed = append(failed, fmt.Errorf("copy %s: %w", c.Name, errs[i]))
			continue
		}
		c.ok()
	}
	if len(failed) == len(b.copies) {
		return unavailable("delete", key, failed)
	}
	if len(failed) > 0 {
		b.log.Warn("a storage copy missed a delete; it is queued for repair", "key", key, "err", errors.Join(failed...))
		b.noteRepair(ctx, key, false)
	}
	return nil
}

// List lists the union of the copies' objects (each key once). A copy that
// cannot be listed, or stops answering for longer than the timeout, is
// skipped if another can be listed.
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	seen := map[string]bool{}
	var errs []error
	listed := 0
	for _, i := range b.readOrder(0) {
		c := b.copies[i]
		err := b.listCopy(ctx, i, prefix, func(oi stowage.ObjectInfo) error {
			if seen[oi.Key] {
				return nil
			}
			seen[oi.Key] = true
			return fn(oi)
		})
		var fe fnError
		switch {
		case errors.As(err, &fe):
			return fe.err
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			c.fail(err)
			errs = append(errs, fmt.Errorf("copy %s: %w", c.Name, err))
			b.log.Warn("storage copy failed a listing; the other copies are listed", "copy", c.Name, "prefix", prefix, "err", err)
			continue
		}
		c.ok()
		listed++
	}
	if listed == 0 {
		return unavailable("list", prefix, errs)
	}
	return nil
}

// Append writes a chunk of an upload to every copy. Each copy appends at
// off if it can: a copy that missed an earlier chunk (it holds fewer than
// off bytes) cannot, and gets the blob by repair after the commit; a copy
// that failed a chunk the client retries takes part again. The chunk counts
// when the quorum stored it; one that did not is not acknowledged, and the
// client's retry (at the same offset) cuts whatever some copies stored, so
// a failed chunk leaves nothing that matters.
func (b *appendBackend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	targets := b.all()
	sizes := make([]int64, len(b.copies))
	errs, rerr := b.fanOut(ctx, targets, r, func(ctx context.Context, i int, r io.Reader) error {
		n, err := b.copies[i].app.Append(ctx, key, off, r)
		sizes[i] = n
		return err
	})
	if rerr != nil {
		return 0, rerr
	}
	behind := make([]bool, len(targets))
	var size int64 = -1
	okN := 0
	for k, i := range targets {
		if errs[k] != nil {
			behind[k] = off > 0 && b.lacks(ctx, i, key, off)
			continue
		}
		if size >= 0 && sizes[i] != size {
			errs[k] = fmt.Errorf("holds %d bytes after the append, another copy %d", sizes[i], size)
			continue
		}
		size = sizes[i]
		okN++
	}
	if okN == 0 && allTrue(behind) {
		// Every copy refused the offset: the request is wrong (an offset
		// past the end), not the storage.
		return 0, errs[0]
	}
	if err := b.settle(ctx, "append", key, targets, errs, behind, false); err != nil {
		return 0, err
	}
	return size, nil
}

func allTrue(v []bool) bool {
	for _, x := range v {
		if !x {
			return false
		}
	}
	return true
}

// lacks reports whether copy i answers, but holds fewer than n bytes of the
// upload object key (or none): it missed earlier chunks, and is not failing.
func (b *Backend) lacks(ctx context.Context, i int, key string, n int64) bool {
	oi, err := b.statCopy(ctx, i, key)
	if stowage.IsNotExist(err) {
		return true
	}
	return err == nil && oi.Size < n
}

// Commit commits the upload on every copy that holds it, and succeeds when
// the quorum did; a copy that missed chunks gets the blob by repair. A copy
// where an earlier attempt already committed (src gone, dst of the right
// size) counts as done, so a commit that missed the quorum can be retried.
func (b *appendBackend) Commit(ctx context.Context, src, dst string, size int64) error {
	targets := b.all()
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for k, i := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := b.copies[i]
			errs[k] = c.app.Commit(ctx, src, dst, size)
			if errs[k] != nil && stowage.IsNotExist(errs[k]) {
				if oi, err := b.statCopy(ctx, i, dst); err == nil && oi.Size == size {
					errs[k] = nil // committed by an earlier attempt
				}
			}
		}()
	}
	wg.Wait()
	behind := make([]bool, len(targets))
	missed := false
	for k, i := range targets {
		if errs[k] != nil {
			behind[k] = b.lacks(ctx, i, src, size)
			missed = true
		}
	}
	if err := b.settle(ctx, "commit", dst, targets, errs, behind, true); err != nil {
		return err
	}
	if missed {
		// What the copies that did not commit still hold of the upload
		// goes, now or by repair.
		for k, i := range targets {
			if errs[k] != nil && b.deleteCopy(ctx, i, src) != nil {
				b.noteRepair(ctx, src, false)
			}
		}
	}
	return nil
}
