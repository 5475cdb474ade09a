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
	case errors.Is(err, scheduler.ErrActive):
		return syscall.EBUSY
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, source.ErrUnreachable):
		return syscall.EIO // the reason (refused, reset, timed out) is in the log
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && passedOn(errno) {
		return errno
	}
	return syscall.EIO
}

// passedOn reports whether an errno found in an error's chain means the
// same to the caller of a file operation as it did where it arose: a local
// file's or the process's condition. Others, such as a refused or reset
// connection to the S3 endpoint, would read as a fault of the caller's own
// file descriptor or socket; they are EIO, with the reason in the log.
func passedOn(errno syscall.Errno) bool {
	switch errno {
	case syscall.ENOENT, syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.EINVAL, syscall.EINTR,
		syscall.ENOSPC, syscall.EDQUOT, syscall.ENOMEM, syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN,
		syscall.EISDIR, syscall.ENOTDIR, syscall.ENAMETOOLONG, syscall.EFBIG, syscall.EEXIST, syscall.ESTALE:
		return true
	}
	return false
}

func isChanged(err error) bool { return errors.Is(err, dataset.ErrChanged) }
