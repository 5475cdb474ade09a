package fs

import (
	"context"
	"errors"
	"io/fs"
	"syscall"

	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/scheduler"
	"github.com/zenithfs/zenithfs/source"
)

// toErrno is the one place where errors become errno values. Everything below
// fs/ returns wrapped sentinel errors; this maps them.
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, scheduler.ErrInvalidSpec):
		return syscall.EINVAL
	case errors.Is(err, scheduler.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, scheduler.ErrPermission), errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, scheduler.ErrNotFound), errors.Is(err, source.ErrNotExist), errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	return syscall.EIO
}

func isChanged(err error) bool { return errors.Is(err, dataset.ErrChanged) }
