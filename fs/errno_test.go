package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/zenithfs/zenithfs/source"
)

func TestToErrno(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("batch 3: %w", &fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}), syscall.ENOENT},
		{fmt.Errorf("read: %w", &fs.PathError{Op: "read", Path: "/x", Err: syscall.EACCES}), syscall.EACCES},
		{fmt.Errorf("build: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("memfd: %w", syscall.ENOSPC), syscall.ENOSPC},
		// an S3 endpoint refusing connections: EIO, not "connection refused"
		{fmt.Errorf("a.parquet: %w", fmt.Errorf("%w: %w", source.ErrUnreachable, refused)), syscall.EIO},
		{fmt.Errorf("get: %w", refused), syscall.EIO},
		{fmt.Errorf("get: %w", syscall.ECONNRESET), syscall.EIO},
		{errors.New("corrupt"), syscall.EIO},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v (%d), want %v", c.err, got, got, c.want)
		}
	}
}
