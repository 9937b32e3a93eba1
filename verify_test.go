package stowage_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
)

func TestVerifyingReader(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	d := digest.FromBytes(data)
	d512 := digest.SHA512.FromBytes(data)
	n := int64(len(data))
	type wrap func(io.Reader) io.Reader
	plain := func(r io.Reader) io.Reader { return r }
	wraps := map[string]wrap{
		"plain":    plain,
		"onebyte":  iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"dataerr":  iotest.DataErrReader, // data and EOF in the same call
		"multi":    func(r io.Reader) io.Reader { return io.MultiReader(r, strings.NewReader("")) },
		"dataerr1": func(r io.Reader) io.Reader { return iotest.DataErrReader(iotest.OneByteReader(r)) },
	}
	tests := []struct {
		name     string
		body     []byte
		digest   digest.Digest
		size     int64
		wantCode stowage.ErrorCode
	}{
		{"right", data, d, n, ""},
		{"right, size unknown", data, d, -1, ""},
		{"right sha512", data, d512, n, ""},
		{"right empty", nil, digest.FromBytes(nil), 0, ""},
		{"right empty, size unknown", nil, digest.FromBytes(nil), -1, ""},
		{"wrong digest", data, digest.FromString("other"), n, stowage.CodeDigestInvalid},
		{"wrong digest, size unknown", data, digest.FromString("other"), -1, stowage.CodeDigestInvalid},
		{"wrong digest sha512", data, digest.SHA512.FromString("other"), n, stowage.CodeDigestInvalid},
		{"short", data[:n-1], d, n, stowage.CodeSizeInvalid},
		{"short, prefix of right content", data[:10], digest.FromBytes(data[:10]), 11, stowage.CodeSizeInvalid},
		{"empty, size declared", nil, digest.FromBytes(nil), 1, stowage.CodeSizeInvalid},
		{"long", append(append([]byte{}, data...), 'x'), d, n, stowage.CodeSizeInvalid},
		{"long, digest of all of it", append(append([]byte{}, data...), 'x'), digest.FromBytes(append(append([]byte{}, data...), 'x')), n, stowage.CodeSizeInvalid},
		{"long, size zero", data, d, 0, stowage.CodeSizeInvalid},
	}
	for _, tt := range tests {
		for wname, w := range wraps {
			t.Run(tt.name+"/"+wname, func(t *testing.T) {
				vr := stowage.NewVerifyingReader(w(bytes.NewReader(tt.body)), tt.digest, tt.size)
				got, err := io.ReadAll(vr)
				if tt.wantCode == "" {
					if err != nil {
						t.Fatalf("ReadAll: %v", err)
					}
					if !bytes.Equal(got, tt.body) {
						t.Fatalf("read %q, want %q", got, tt.body)
					}
					if vr.N() != int64(len(tt.body)) {
						t.Fatalf("N() = %d, want %d", vr.N(), len(tt.body))
					}
					return
				}
				wantCode(t, err, tt.wantCode)
				if errors.Is(err, io.EOF) {
					t.Fatalf("error wraps io.EOF: a reader loop would treat it as success")
				}
			})
		}
	}
}

// TestVerifyingReaderIOTest runs the standard reader conformance checks on a
// reader whose content is right.
func TestVerifyingReaderIOTest(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	vr := stowage.NewVerifyingReader(bytes.NewReader(data), digest.FromBytes(data), int64(len(data)))
	if err := iotest.TestReader(vr, data); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyingReaderReaderError: an error from the source is passed through.
func TestVerifyingReaderReaderError(t *testing.T) {
	boom := errors.New("boom")
	vr := stowage.NewVerifyingReader(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), digest.FromString("abc"), 3)
	if _, err := io.ReadAll(vr); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
}

// TestVerifyingReaderTimeout: a source that times out mid-read is not EOF.
func TestVerifyingReaderTimeout(t *testing.T) {
	data := []byte("abcdef")
	vr := stowage.NewVerifyingReader(iotest.TimeoutReader(bytes.NewReader(data)), digest.FromBytes(data), 6)
	buf := make([]byte, 3)
	if _, err := vr.Read(buf); err != nil {
		t.Fatalf("first read: %v", err)
	}
	if _, err := vr.Read(buf); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("second read: %v, want timeout", err)
	}
}
