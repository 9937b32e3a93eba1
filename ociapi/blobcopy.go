package ociapi

import (
	"io"
	"os"
	"sync"
)

// copyBlob sends n bytes of a blob's stream rc to w. An *os.File (a plain
// blob on disk) goes through io.CopyN, which hands it to sendfile(2). Any
// other stream (a decrypting reader, an object store's body) goes through a
// 1 MiB buffer in writes of that size: net/http's own fallback copies in
// 32 KiB pieces, two write calls per 64 KiB encrypted segment.
func copyBlob(w io.Writer, rc io.Reader, n int64) (int64, error) {
	if _, ok := rc.(*os.File); ok {
		return io.CopyN(w, rc, n)
	}
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	m, err := io.CopyBuffer(struct{ io.Writer }{w}, io.LimitReader(struct{ io.Reader }{rc}, n), *bp)
	if err == nil && m < n {
		err = io.EOF
	}
	return m, err
}

var copyPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}
