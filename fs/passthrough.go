package fs

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// Passthrough. Serving a read means copying the reply to /dev/fuse, and on
// a machine with few cores that copy, not the cache, bounds how fast a
// cached batch reaches its reader. With FUSE passthrough (Linux ≥ 6.9, and
// CAP_SYS_ADMIN for the daemon) the kernel reads a registered backing file
// itself: a batch file's handle offers a sealed memfd holding its bytes,
// and reads (and mmap) never come to the daemon. go-fuse registers one
// backing file per inode while it has open handles, asking the first
// handle only, so the memfd is made lazily, when asked. Where the kernel
// refuses (no root, old kernel), go-fuse stops asking and reads are served
// from the handle's bytes as before.
//
// It is off by default (zenithfs mount --passthrough turns it on): measured
// with bench/run-local.sh -arms p1p2 on 1.3 MiB batches, a read served from
// the daemon's cache went from 1.1–1.3 to 1.4 GB/s, but a warm re-read fell
// from 4.3–4.7 GB/s (kernel page cache, kept across opens) to 1.4 GB/s,
// because a passthrough open cannot keep the page cache and each open
// copies the batch into a new memfd. Keeping memfds in the cache itself
// would remove that copy; not done yet.

// passthroughHandle is a bytesHandle that can back itself with a memfd.
type passthroughHandle struct {
	bytesHandle
	mu sync.Mutex
	fd int // memfd, or -1
}

var (
	_ = (gofs.FilePassthroughFder)((*passthroughHandle)(nil))
	_ = (gofs.FileReleaser)((*passthroughHandle)(nil))
)

func newPassthroughHandle(b []byte) *passthroughHandle {
	return &passthroughHandle{bytesHandle: bytesHandle{data: b}, fd: -1}
}

// PassthroughFd implements fs.FilePassthroughFder.
func (h *passthroughHandle) PassthroughFd() (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fd >= 0 {
		return h.fd, true
	}
	fd, err := memfdOf(h.data)
	if err != nil {
		return 0, false
	}
	h.fd = fd
	return fd, true
}

// Release implements fs.FileReleaser: the kernel keeps its own reference to
// a registered backing file, so ours can go.
func (h *passthroughHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
	return 0
}

// memfdOf returns a sealed, read-only memfd holding b.
func memfdOf(b []byte) (int, error) {
	fd, err := unix.MemfdCreate("zenithfs-batch", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	for off := 0; off < len(b); {
		n, err := unix.Pwrite(fd, b[off:], int64(off))
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("memfd write: %w", err)
		}
		off += n
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("memfd seal: %w", err)
	}
	return fd, nil
}
