package ociapi

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// failingWriter fails after limit bytes.
type failingWriter struct {
	limit int
	buf   bytes.Buffer
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.buf.Len()+len(p) > f.limit {
		k := f.limit - f.buf.Len()
		f.buf.Write(p[:k])
		return k, errors.New("client went away")
	}
	return f.buf.Write(p)
}

// errReader returns its data, then err.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func TestCopyBlob(t *testing.T) {
	data := make([]byte, 5*copyBuf+12345)
	for i := range data {
		data[i] = byte(rand.N(256))
	}
	for _, tc := range []struct {
		name    string
		stream  int    // bytes the stream holds
		n       int64  // bytes asked for
		readErr error  // the stream's error after its bytes
		limit   int    // writer fails after this many bytes (0: never)
		want    int64  // bytes written
		wantErr string // "" for none
	}{
		{"small", 1000, 1000, nil, 0, 1000, ""},
		{"one buffer", copyBuf, copyBuf, nil, 0, copyBuf, ""},
		{"read ahead", len(data), int64(len(data)), nil, 0, int64(len(data)), ""},
		{"asks less than the stream", len(data), 3*copyBuf + 7, nil, 0, 3*copyBuf + 7, ""},
		{"stream shorter than asked", 2*copyBuf + 5, 3 * copyBuf, nil, 0, 2*copyBuf + 5, "EOF"},
		{"stream fails", 2*copyBuf + 5, int64(len(data)), errors.New("segment 3 fails authentication"), 0, 2*copyBuf + 5, "authentication"},
		{"writer fails", len(data), int64(len(data)), nil, copyBuf + 100, copyBuf + 100, "went away"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var src io.Reader = bytes.NewReader(data[:tc.stream])
			if tc.readErr != nil {
				src = &errReader{r: src, err: tc.readErr}
			}
			w := &failingWriter{limit: len(data) + 1}
			if tc.limit > 0 {
				w.limit = tc.limit
			}
			got, err := copyBlob(w, src, tc.n)
			if got != tc.want || int64(w.buf.Len()) != tc.want {
				t.Fatalf("wrote %d (writer holds %d), want %d", got, w.buf.Len(), tc.want)
			}
			if !bytes.Equal(w.buf.Bytes(), data[:got]) {
				t.Fatal("bytes differ from the stream's")
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr))):
				t.Fatalf("error %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}
