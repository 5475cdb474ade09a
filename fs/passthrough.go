package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/zenithfs/zenithfs/blob"
)

// Passthrough. Serving a read means copying the reply to /dev/fuse, and on
// a machine with few cores that copy, not the cache, bounds how fast a
// cached batch reaches its reader. With FUSE passthrough (Linux ≥ 6.9, and
// CAP_SYS_ADMIN for the daemon) the kernel reads a registered backing file
// itself. With zenithfs mount --passthrough (the default), the prefetch store seals every
// built batch into a memfd (blob.Memfds) and the cache holds those memfds:
// an open registers the batch's memfd as the backing file, and reads (and
// mmap) never come to the daemon and cost it no copy. go-fuse registers one
// backing file per inode while it has open handles, asking the first
// handle only. Where the kernel refuses (no root, old kernel), go-fuse
// stops asking and reads are served from the memfd by pread.
//
// A handle whose batch is held in memory (passthrough on, but the memfd
// could not be made) makes a memfd of its own when asked, and closes it at
// release.
//
// zenithfs mount turns it on where it can (root; --passthrough=false turns
// it off); bench/README.md has the measurements.

// passthroughHandle is a blobHandle that offers its memfd for passthrough.
type passthroughHandle struct {
	blobHandle
	mu  sync.Mutex
	own *blob.Blob // memfd made for this handle, or nil
}

var (
	_ = (gofs.FilePassthroughFder)((*passthroughHandle)(nil))
	_ = (gofs.FileReleaser)((*passthroughHandle)(nil))
)

func newPassthroughHandle(b *blob.Blob) *passthroughHandle {
	return &passthroughHandle{blobHandle: blobHandle{b: b}}
}

// PassthroughFd implements fs.FilePassthroughFder. The fd stays valid while
// the handle lives: it holds the blob.
func (h *passthroughHandle) PassthroughFd() (int, bool) {
	if f := h.b.File(); f != nil {
		return int(f.Fd()), true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.own == nil {
		data, err := h.b.Data()
		if err != nil {
			return 0, false
		}
		if h.own, err = blob.Memfd(data); err != nil {
			return 0, false
		}
	}
	return int(h.own.File().Fd()), true
}

// Release implements fs.FileReleaser: the kernel keeps its own reference to
// a registered backing file, so a memfd made for this handle can go.
func (h *passthroughHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.own != nil {
		h.own.Close()
		h.own = nil
	}
	return 0
}
