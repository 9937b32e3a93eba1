package ociapi

import (
	"io"
	"os"
	"sync"
)

// copyBlob sends n bytes of a blob's stream rc to w. An *os.File (a plain
// blob on disk) goes through io.CopyN, which hands it to sendfile(2). Any
// other stream (a decrypting reader, an object store's body) goes through
// 1 MiB buffers in writes of that size (net/http's own fallback copies in
// 32 KiB pieces, two write calls per 64 KiB encrypted segment), and a
// stream longer than one buffer is read ahead on a second goroutine: the
// next megabyte is read and decrypted while this one is written, so one
// pull of an encrypted blob uses two cores, not one (docs/performance.md,
// "Encryption table").
func copyBlob(w io.Writer, rc io.Reader, n int64) (int64, error) {
	if _, ok := rc.(*os.File); ok {
		return io.CopyN(w, rc, n)
	}
	if n <= copyBuf {
		bp := copyPool.Get().(*[]byte)
		defer copyPool.Put(bp)
		m, err := io.CopyBuffer(struct{ io.Writer }{w}, io.LimitReader(struct{ io.Reader }{rc}, n), *bp)
		if err == nil && m < n {
			err = io.EOF
		}
		return m, err
	}
	return copyAhead(w, io.LimitReader(rc, n), n)
}

const copyBuf = 1 << 20

var copyPool = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// chunk is one buffer of a read-ahead copy: its filled part, or the read's
// error once the stream ended or failed.
type chunk struct {
	bp  *[]byte
	n   int
	err error
}

// copyAhead copies n bytes of r to w with one reader goroutine filling up
// to two buffers ahead of the writer. It returns only after the reader
// goroutine stopped, so the caller may close r's source.
func copyAhead(w io.Writer, r io.Reader, n int64) (int64, error) {
	const depth = 2
	full := make(chan chunk, depth)
	free := make(chan *[]byte, depth+1)
	for range depth + 1 {
		free <- copyPool.Get().(*[]byte)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		for {
			var bp *[]byte
			select {
			case bp = <-free:
			case <-stop:
				return
			}
			k, err := io.ReadFull(r, *bp)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			select {
			case full <- chunk{bp: bp, n: k, err: err}:
			case <-stop:
				free <- bp
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var written int64
	var err error
	for c := range full {
		if c.n > 0 && err == nil {
			var m int
			m, err = w.Write((*c.bp)[:c.n])
			written += int64(m)
			if err == nil && m < c.n {
				err = io.ErrShortWrite
			}
		}
		free <- c.bp
		if c.err != nil && err == nil && c.err != io.EOF {
			err = c.err
		}
		if err != nil {
			break
		}
	}
	close(stop)
	<-done
	for c := range full { // closed by now: what the reader sent before it saw stop
		free <- c.bp
	}
	for range depth + 1 {
		select {
		case bp := <-free:
			copyPool.Put(bp)
		default:
		}
	}
	if err == nil && written < n {
		err = io.EOF
	}
	return written, err
}
