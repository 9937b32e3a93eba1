package ociapi

import (
	"bufio"
	"encoding/json"
	"net/http"
)

// jsonList writes a JSON object whose last member is a list, as the items
// arrive a page at a time: open, then the items, then close; nothing is
// held but a 32 KiB buffer. The status and headers go out with the first
// buffer, so an error before it is still an OCI error; after it, the
// response is cut off (the client must not take part of a list for all of
// it).
type jsonList struct {
	out   *lazyWriter
	bw    *bufio.Writer
	open  string // up to and including the list's '['
	n     int    // items written
	began bool
	buf   []byte
}

func newJSONList(w http.ResponseWriter, contentType, open string) *jsonList {
	out := &lazyWriter{w: w, ct: contentType}
	return &jsonList{out: out, bw: bufio.NewWriterSize(out, 32<<10), open: open}
}

func (l *jsonList) begin() {
	if !l.began {
		l.began = true
		l.bw.WriteString(l.open)
	}
}

// lazyWriter sends the status with the first bytes, so that an error
// while the first 32 KiB are still buffered is still an OCI error.
type lazyWriter struct {
	w     http.ResponseWriter
	ct    string
	wrote bool
}

func (lw *lazyWriter) Write(p []byte) (int, error) {
	if !lw.wrote {
		lw.wrote = true
		lw.w.Header().Set("Content-Type", lw.ct)
		lw.w.WriteHeader(http.StatusOK)
	}
	return lw.w.Write(p)
}

// strings adds names (tags, repositories).
func (l *jsonList) strings(page []string) error {
	l.begin()
	for _, s := range page {
		l.buf = appendJSONString(l.buf[:0], s)
		l.item(l.buf)
	}
	return l.err()
}

// values adds JSON-encodable items.
func (l *jsonList) values(page []any) error {
	l.begin()
	for _, v := range page {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		l.item(b)
	}
	return l.err()
}

func (l *jsonList) item(b []byte) {
	if l.n > 0 {
		l.bw.WriteByte(',')
	}
	l.bw.Write(b)
	l.n++
}

// err is the first write error: the client went away.
func (l *jsonList) err() error {
	_, err := l.bw.Write(nil)
	return err
}

// finish closes the list after a walk that ended with err.
func (l *jsonList) finish(err error) error {
	if err != nil {
		if !l.out.wrote {
			return err // nothing sent: the buffer is dropped
		}
		// The status is out: cut the response off (net/http closes the
		// connection without completing the body).
		panic(http.ErrAbortHandler)
	}
	l.begin()
	l.bw.WriteString("]}")
	return l.bw.Flush()
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
// Names and tags are plain ASCII; anything else takes the slow path.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
