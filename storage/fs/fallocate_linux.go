package fs

import (
	"os"
	"syscall"
)

func fallocate(f File, size int64) error {
	of, ok := f.(*os.File)
	if !ok {
		return nil
	}
	return syscall.Fallocate(int(of.Fd()), 0, 0, size)
}

// startWriteback asks the kernel to begin writing a range of f to disk
// without waiting (sync_file_range with SYNC_FILE_RANGE_WRITE), so the fsync
// at the end of a large write has little left to do.
func startWriteback(f File, off, n int64) {
	of, ok := f.(*os.File)
	if !ok {
		return
	}
	const syncFileRangeWrite = 2
	syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, of.Fd(), uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
}
