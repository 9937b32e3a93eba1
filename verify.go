package stowage

import (
	"io"

	"github.com/opencontainers/go-digest"
)

// VerifyingReader hashes and counts what it reads and, at EOF, fails with a
// DIGEST_INVALID or SIZE_INVALID error if the bytes are not what was promised.
// Backends abort a Put when the reader fails, so a wrong blob never lands.
type VerifyingReader struct {
	r    io.Reader
	want Digest
	size int64     // -1: any size
	h    *hashPipe // hashes on another goroutine while the caller writes
	n    int64
}

// NewVerifyingReader returns a reader over r that verifies digest d and, if
// size >= 0, the byte count.
func NewVerifyingReader(r io.Reader, d Digest, size int64) *VerifyingReader {
	return &VerifyingReader{r: r, want: d, size: size, h: newHashPipe(d.Algorithm().Hash())}
}

func (v *VerifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.size >= 0 && v.n > v.size {
		return n, Errorf(CodeSizeInvalid, "blob is larger than the %d bytes declared", v.size)
	}
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			return n, Errorf(CodeSizeInvalid, "blob has %d bytes, %d were declared", v.n, v.size)
		}
		if got := digest.NewDigest(v.want.Algorithm(), v.h.finish()); got != v.want {
			return n, Errorf(CodeDigestInvalid, "uploaded content has digest %s, not the %s given", got, v.want)
		}
	}
	return n, err
}

// N returns the number of bytes read so far.
func (v *VerifyingReader) N() int64 { return v.n }
