package fs

import (
	"io"
	"os"
)

// FS is the file system under a Backend: exactly the calls the Backend
// makes, so that a test can put a file system that misbehaves (faultfs, which
// forgets every write not yet synced, as a power loss does) under the real
// Backend code. OS, the default, is the operating system's.
//
// Names are paths as the Backend builds them (filepath.Join of its root and
// a key). Errors are those of package os: a missing name wraps
// io/fs.ErrNotExist, an existing one (Mkdir, OpenFile with O_EXCL)
// io/fs.ErrExist.
type FS interface {
	// OpenFile is os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Mkdir is os.Mkdir: the parent must exist.
	Mkdir(name string, perm os.FileMode) error
	// Rename is os.Rename: it atomically replaces newpath.
	Rename(oldpath, newpath string) error
	// Remove is os.Remove: a file, or an empty directory.
	Remove(name string) error
	// Stat is os.Stat.
	Stat(name string) (os.FileInfo, error)
	// ReadDir is os.ReadDir: the entries sorted by name.
	ReadDir(name string) ([]os.DirEntry, error)
	// SyncDir makes the entries of directory name durable: the names
	// created, renamed into or removed from it survive a power loss once it
	// returns (fsync of the directory).
	SyncDir(name string) error
}

// File is an open file of an FS: the methods of *os.File the Backend uses.
// Sync makes the file's contents and size durable (fsync); its name in its
// directory is durable only after FS.SyncDir of that directory.
type File interface {
	io.Reader
	io.Writer
	io.Seeker
	io.Closer
	Name() string
	Stat() (os.FileInfo, error)
	Sync() error
	Truncate(size int64) error
}

// OS is the operating system's file system. Its OpenFile returns *os.File,
// so a Backend's Open hands net/http an *os.File it can send with sendfile(2).
var OS FS = osFS{}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a nil *os.File in a non-nil File
	}
	return f, nil
}

func (osFS) Mkdir(name string, perm os.FileMode) error  { return os.Mkdir(name, perm) }
func (osFS) Rename(oldpath, newpath string) error       { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                   { return os.Remove(name) }
func (osFS) Stat(name string) (os.FileInfo, error)      { return os.Stat(name) }
func (osFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
