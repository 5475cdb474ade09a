package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// logFile is jobs/<name>/log: a window onto the log file the runner
// appends to. Getattr reports its current size and reads go to the file at
// the offset asked (direct I/O), so `tail -f` follows a running job.
type logFile struct {
	gofs.Inode
	sh *shared
	jobRef
}

var (
	_ = (gofs.NodeOpener)((*logFile)(nil))
	_ = (gofs.NodeReader)((*logFile)(nil))
	_ = (gofs.NodeGetattrer)((*logFile)(nil))
	_ = (gofs.FileReleaser)((*logHandle)(nil))
)

// logHandle holds the log file open once it exists (a pending job has none
// yet).
type logHandle struct {
	mu sync.Mutex
	f  *os.File
}

// Release implements fs.FileReleaser.
func (h *logHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f != nil {
		h.f.Close()
		h.f = nil
	}
	return 0
}

func (l *logFile) path() (string, error) {
	j, err := l.job()
	if err != nil {
		return "", err
	}
	return j.LogPath, nil
}

func (l *logFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Uid = l.sh.owner
	a.Nlink = 1
	if p, err := l.path(); err == nil {
		if fi, err := os.Stat(p); err == nil {
			a.Size = uint64(fi.Size())
			mt := fi.ModTime()
			a.SetTimes(nil, &mt, nil)
		}
	}
}

// Getattr implements fs.NodeGetattrer.
func (l *logFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer l.sh.guard("getattr", "jobs/"+l.name+"/log", &errno)
	l.attr(&out.Attr)
	out.SetTimeout(ctlAttrTimeout)
	return 0
}

// Open implements fs.NodeOpener: read-only.
func (l *logFile) Open(ctx context.Context, flags uint32) (fh gofs.FileHandle, fuseFlags uint32, errno syscall.Errno) {
	defer l.sh.guard("open", "jobs/"+l.name+"/log", &errno)
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES
	}
	if _, err := l.path(); err != nil {
		return nil, 0, toErrno(err)
	}
	return &logHandle{}, fuse.FOPEN_DIRECT_IO, 0
}

// Read implements fs.NodeReader.
func (l *logFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (res fuse.ReadResult, errno syscall.Errno) {
	defer l.sh.guard("read", "jobs/"+l.name+"/log", &errno)
	h, ok := fh.(*logHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		p, err := l.path()
		if err != nil {
			return nil, toErrno(err)
		}
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return fuse.ReadResultData(nil), 0 // not started yet: empty so far
		}
		if err != nil {
			return nil, toErrno(err)
		}
		h.f = f
	}
	n, err := h.f.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// cancelFile is jobs/<name>/cancel: any write cancels the job.
type cancelFile struct {
	gofs.Inode
	sh *shared
	jobRef
}

var (
	_ = (gofs.NodeOpener)((*cancelFile)(nil))
	_ = (gofs.NodeWriter)((*cancelFile)(nil))
	_ = (gofs.NodeSetattrer)((*cancelFile)(nil))
	_ = (gofs.NodeGetattrer)((*cancelFile)(nil))
)

func (c *cancelFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o220
	a.Uid = c.sh.owner
	a.Nlink = 1
}

// Getattr implements fs.NodeGetattrer.
func (c *cancelFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer c.sh.guard("getattr", "jobs/"+c.name+"/cancel", &errno)
	c.attr(&out.Attr)
	out.SetTimeout(ctlAttrTimeout)
	return 0
}

// Setattr implements fs.NodeSetattrer (the O_TRUNC of `echo 1 > cancel`).
func (c *cancelFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) (errno syscall.Errno) {
	defer c.sh.guard("setattr", "jobs/"+c.name+"/cancel", &errno)
	if !c.sh.allowed(ctx) {
		return syscall.EACCES
	}
	c.attr(&out.Attr)
	out.SetTimeout(ctlAttrTimeout)
	return 0
}

// Open implements fs.NodeOpener: write-only, for the mount's owner and root.
func (c *cancelFile) Open(ctx context.Context, flags uint32) (fh gofs.FileHandle, fuseFlags uint32, errno syscall.Errno) {
	defer c.sh.guard("open", "jobs/"+c.name+"/cancel", &errno)
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY || !c.sh.allowed(ctx) {
		return nil, 0, syscall.EACCES
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

// Write implements fs.NodeWriter.
func (c *cancelFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (written uint32, errno syscall.Errno) {
	defer c.sh.guard("write", "jobs/"+c.name+"/cancel", &errno)
	if !c.sh.allowed(ctx) {
		return 0, syscall.EACCES
	}
	if err := c.s.CancelSeq(c.name, c.seq); err != nil {
		return 0, c.sh.failed("cancel", "jobs/"+c.name, err)
	}
	return uint32(len(data)), 0
}
