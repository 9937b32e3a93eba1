package faultfs_test

import (
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"testing"

	"github.com/stowage/stowage/storage/fs/faultfs"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// write creates name with data and, as told, syncs the file and its
// directory.
func write(t *testing.T, f *faultfs.FS, name, data string, syncFile bool) {
	t.Helper()
	h, err := f.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	must(t, err)
	_, err = h.Write([]byte(data))
	must(t, err)
	if syncFile {
		must(t, h.Sync())
	}
	must(t, h.Close())
}

func contents(t *testing.T, f *faultfs.FS, name string) (string, bool) {
	t.Helper()
	h, err := f.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, iofs.ErrNotExist) {
		return "", false
	}
	must(t, err)
	defer h.Close()
	b, err := io.ReadAll(h)
	must(t, err)
	return string(b), true
}

// TestPowerLoss pins the model: what survives a power loss is exactly what
// was synced, file contents by File.Sync and names by SyncDir.
func TestPowerLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		do     func(t *testing.T, f *faultfs.FS)
		file   string
		want   string // "" with exists false: absent
		exists bool
	}{
		{"unsynced file is gone", func(t *testing.T, f *faultfs.FS) {
			write(t, f, "/a", "x", true)
		}, "/a", "", false},
		{"synced file and directory survive", func(t *testing.T, f *faultfs.FS) {
			write(t, f, "/a", "x", true)
			must(t, f.SyncDir("/"))
		}, "/a", "x", true},
		{"name synced, contents not: empty file", func(t *testing.T, f *faultfs.FS) {
			write(t, f, "/a", "x", false)
			must(t, f.SyncDir("/"))
		}, "/a", "", true},
		{"writes after the last sync are lost", func(t *testing.T, f *faultfs.FS) {
			write(t, f, "/a", "x", true)
			must(t, f.SyncDir("/"))
			h, err := f.OpenFile("/a", os.O_WRONLY, 0)
			must(t, err)
			_, err = h.Seek(1, io.SeekStart)
			must(t, err)
			_, err = h.Write([]byte("yz"))
			must(t, err)
			must(t, h.Close())
		}, "/a", "x", true},
		{"directory created but its parent not synced", func(t *testing.T, f *faultfs.FS) {
			must(t, f.Mkdir("/d", 0o755))
			write(t, f, "/d/a", "x", true)
			must(t, f.SyncDir("/d"))
		}, "/d/a", "", false},
		{"rename without a directory sync is undone", func(t *testing.T, f *faultfs.FS) {
			must(t, f.Mkdir("/d", 0o755))
			must(t, f.SyncDir("/"))
			write(t, f, "/tmp1", "x", true)
			must(t, f.SyncDir("/"))
			must(t, f.Rename("/tmp1", "/d/a"))
		}, "/d/a", "", false},
		{"rename with the target directory synced survives", func(t *testing.T, f *faultfs.FS) {
			must(t, f.Mkdir("/d", 0o755))
			must(t, f.SyncDir("/"))
			write(t, f, "/tmp1", "x", true)
			must(t, f.Rename("/tmp1", "/d/a"))
			must(t, f.SyncDir("/d"))
		}, "/d/a", "x", true},
		{"remove without a directory sync is undone", func(t *testing.T, f *faultfs.FS) {
			write(t, f, "/a", "x", true)
			must(t, f.SyncDir("/"))
			must(t, f.Remove("/a"))
		}, "/a", "x", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := faultfs.New()
			tc.do(t, f)
			f.PowerLoss()
			got, ok := contents(t, f, tc.file)
			if ok != tc.exists || got != tc.want {
				t.Errorf("after power loss %s = %q (exists %v), want %q (exists %v)", tc.file, got, ok, tc.want, tc.exists)
			}
		})
	}
}

func TestCrashAfter(t *testing.T) {
	f := faultfs.New()
	f.CrashAfter(1)
	must(t, f.Mkdir("/a", 0o755))
	if err := f.Mkdir("/b", 0o755); !errors.Is(err, faultfs.ErrCrashed) {
		t.Fatalf("second Mkdir after CrashAfter(1) = %v, want ErrCrashed", err)
	}
	if !f.Crashed() || f.Ops() != 2 {
		t.Fatalf("Crashed %v Ops %d, want true 2", f.Crashed(), f.Ops())
	}
	if _, err := f.Stat("/b"); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("a refused Mkdir created /b: %v", err)
	}
	h, err := f.OpenFile("/a/x", os.O_WRONLY|os.O_CREATE, 0o644)
	if !errors.Is(err, faultfs.ErrCrashed) || h != nil {
		t.Fatalf("OpenFile after the crash = %v, %v", h, err)
	}
	f.PowerLoss()
	if f.Crashed() {
		t.Fatal("still crashed after PowerLoss")
	}
	if _, err := f.Stat("/a"); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("unsynced /a survived: %v", err)
	}
	must(t, f.Mkdir("/a", 0o755))
}

func TestHandlesDieAtPowerLoss(t *testing.T) {
	f := faultfs.New()
	h, err := f.OpenFile("/a", os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	f.PowerLoss()
	if _, err := h.Write([]byte("x")); !errors.Is(err, faultfs.ErrCrashed) {
		t.Fatalf("Write on a handle from before the power loss = %v", err)
	}
}
