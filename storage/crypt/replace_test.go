package crypt_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mem"
)

func dataKeyCount(t *testing.T, m *crypt.Manager) int64 {
	t.Helper()
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range st.DataKeys {
		n += c.Count
	}
	return n
}

// TestReplaceForgetsOldDataKey: a Put or an upload's Commit over an object
// that is already stored (the same blob pushed again after a crash left it
// stored but unrecorded) forgets the replaced object's data key, so one
// object has one data key row; the new object stays readable.
func TestReplaceForgetsOldDataKey(t *testing.T) {
	const upload = "uploads/u1/data"
	put := func(t *testing.T, b stowage.Backend, data []byte) {
		if err := b.Put(ctx, "blobs/x", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(t *testing.T, b stowage.Backend, data []byte) {
		app := b.(stowage.Appender)
		if _, err := app.Append(ctx, upload, 0, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := app.Commit(ctx, upload, "blobs/x", int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	type write func(*testing.T, stowage.Backend, []byte)
	for _, tc := range []struct {
		name          string
		first, second write
	}{
		{"put over put", put, put},
		{"commit over put", put, commit},
		{"put over commit", commit, put},
		{"commit over commit", commit, commit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, m := newCrypt(t, mem.New())
			if err := b.Put(ctx, "blobs/other", bytes.NewReader([]byte("other")), 5); err != nil {
				t.Fatal(err) // another object, whose key stays
			}
			one, two := random(100_000), random(70_000)
			tc.first(t, b, one)
			tc.second(t, b, two)
			if n := dataKeyCount(t, m); n != 2 {
				t.Errorf("2 objects after a replacing write have %d data keys, want 2", n)
			}
			m.Forget()
			if got, err := read(b, "blobs/x", 0); err != nil || !bytes.Equal(got, two) {
				t.Errorf("replaced object: %d bytes, %v", len(got), err)
			}
			if got, err := read(b, "blobs/other", 0); err != nil || string(got) != "other" {
				t.Errorf("the other object: %q, %v", got, err)
			}
			if err := b.Delete(ctx, "blobs/x"); err != nil {
				t.Fatal(err)
			}
			if n := dataKeyCount(t, m); n != 1 {
				t.Errorf("after deleting it, %d data keys, want 1", n)
			}
		})
	}
}

// flaky is a plain Backend (no Scrubber, no Appender) whose reads fail after
// failAt bytes with an error of the storage, not of the data.
type flaky struct {
	stowage.Backend
	failAt int
}

var errDisk = errors.New("read: input/output error")

func (f *flaky) Open(c context.Context, key string, off int64) (io.ReadCloser, error) {
	rc, err := f.Backend.Open(c, key, off)
	if err != nil || f.failAt < 0 {
		return rc, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, int64(f.failAt)), errReader{}), rc}, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errDisk }

// TestScrubReadErrorIsNotCorrupt: over storage that is not a Scrubber, a
// read error of the storage (in the header or in the data) means the object
// could not be checked: ScrubObject returns the error and reports no copy
// corrupt. Damaged bytes still count as corrupt.
func TestScrubReadErrorIsNotCorrupt(t *testing.T) {
	data := random(200_000)
	check := func(r io.Reader) error {
		got, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return errors.New("wrong bytes")
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		failAt  int
		tamper  int // offset of a stored byte to flip (-1: none)
		wantErr bool
	}{
		{"no failure", -1, -1, false},
		{"in the header", 5, -1, true},
		{"in the first segment", 1000, -1, true},
		{"in a later segment", 150_000, -1, true},
		{"damaged, no read error", -1, 100_000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &flaky{Backend: mem.New(), failAt: -1}
			b, _ := newCrypt(t, inner)
			if err := b.Put(ctx, "blobs/x", bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if tc.tamper >= 0 {
				rc, err := inner.Open(ctx, "blobs/x", 0)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(rc)
				rc.Close()
				raw[tc.tamper] ^= 1
				if err := inner.Put(ctx, "blobs/x", bytes.NewReader(raw), int64(len(raw))); err != nil {
					t.Fatal(err)
				}
			}
			inner.failAt = tc.failAt
			res, err := b.(stowage.Scrubber).ScrubObject(ctx, "blobs/x", check)
			switch {
			case tc.wantErr:
				if !errors.Is(err, errDisk) {
					t.Errorf("error %v, want the read error", err)
				}
				if len(res.Corrupt) > 0 || len(res.Missing) > 0 || res.Good > 0 {
					t.Errorf("a read error counted as a finding: %+v", res)
				}
			case tc.tamper >= 0:
				if err != nil || len(res.Corrupt) != 1 {
					t.Errorf("damaged object: %+v, %v; want corrupt", res, err)
				}
			default:
				if err != nil || res.Good != 1 {
					t.Errorf("healthy object: %+v, %v", res, err)
				}
			}
		})
	}
}
