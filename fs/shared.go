package fs

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// shared is the state every node of one mount reaches: the logger, the
// mount's owner, the recent-error log shown under .zenith/errors, and a test
// hook for fault injection. It is created once per mount; nodes hold a pointer.
type shared struct {
	log    *slog.Logger
	owner  uint32 // uid of the user who mounted; root is always allowed too
	errs   *errorRing
	faults func(op, name string) // test hook: may panic to exercise guard; nil in production
	start  time.Time             // mount time: the times of the fixed directories
}

// dirAttr fills the attributes of a fixed read-only directory.
func (s *shared) dirAttr(a *fuse.Attr, mode uint32) {
	a.Mode = syscall.S_IFDIR | mode
	t := uint64(s.start.Unix())
	a.Atime, a.Mtime, a.Ctime = t, t, t
	a.Uid = s.owner
}

// guard turns a panic in a FUSE handler into EIO plus one log line with the
// stack, so a bug in one operation never takes the mount down. Use as
//
//	defer s.guard("read", name, &errno)
//
// in handlers with a named syscall.Errno result.
func (s *shared) guard(op, name string, errno *syscall.Errno) {
	if r := recover(); r != nil {
		s.log.Error("panic in FUSE handler", "op", op, "name", name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		s.errs.add(fmt.Sprintf("panic in %s %s: %v", op, name, r))
		*errno = syscall.EIO
	}
}

// failed turns err, from a control-tree operation, into its errno. A
// rejection (a bad spec, a taken name, a caller without the right) is the
// caller's to read in jobs/errors; any other error is the daemon's own
// (its job database cannot be written, it is shutting down): that one
// also goes to the log and .zenith/errors, so that an EIO always has a
// reason somewhere.
func (s *shared) failed(op, name string, err error) syscall.Errno {
	errno := toErrno(err)
	if errno == syscall.EIO {
		s.log.Error("control tree operation failed", "op", op, "name", name, "err", err)
		s.errs.add(fmt.Sprintf("%s %s: %v", op, name, err))
	}
	return errno
}

// fault calls the test hook, if any.
func (s *shared) fault(op, name string) {
	if s.faults != nil {
		s.faults(op, name)
	}
}

// allowed reports whether the caller of a FUSE request may change state
// (submit or cancel jobs): the mount's owner and root.
func (s *shared) allowed(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return false
	}
	return c.Uid == 0 || c.Uid == s.owner
}

// errorRing keeps the most recent error lines for .zenith/errors. A reason
// already there is not added again: its line moves to the end, counting
// the repeats, so that a failure met on every access (a dataset that
// cannot be read, asked for by every lookup) never pushes the other
// reasons out. A reason is one line: newlines inside it become "; ".
type errorRing struct {
	mu      sync.Mutex
	entries []errorEntry
	max     int
}

type errorEntry struct {
	msg         string
	first, last time.Time
	n           int
}

func newErrorRing(max int) *errorRing { return &errorRing{max: max} }

func (r *errorRing) add(line string) {
	line = strings.ReplaceAll(strings.TrimSpace(line), "\n", "; ")
	now := time.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	e := errorEntry{msg: line, first: now, last: now, n: 1}
	for i, old := range r.entries {
		if old.msg == line {
			e.first, e.n = old.first, old.n+1
			r.entries = append(r.entries[:i], r.entries[i+1:]...)
			break
		}
	}
	r.entries = append(r.entries, e)
	if len(r.entries) > r.max {
		r.entries = r.entries[len(r.entries)-r.max:]
	}
}

func (r *errorRing) text() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b []byte
	for _, e := range r.entries {
		b = append(b, e.last.Format(time.RFC3339)+" "+e.msg...)
		if e.n > 1 {
			b = append(b, fmt.Sprintf(" (%d times since %s)", e.n, e.first.Format(time.RFC3339))...)
		}
		b = append(b, '\n')
	}
	return b
}

// genFile is a read-only file whose content is generated when it is opened:
// each open takes one snapshot, so `cat` sees a consistent, current content.
// It is served with direct I/O, so the kernel neither caches stale bytes nor
// trusts a stale size.
type genFile struct {
	gofs.Inode
	readOnlyFile
	sh      *shared
	content func(ctx context.Context) ([]byte, error)
}

var (
	_ = (gofs.NodeOpener)((*genFile)(nil))
	_ = (gofs.NodeGetattrer)((*genFile)(nil))
	_ = (gofs.NodeReader)((*genFile)(nil))
)

// newGenFile returns a generated file node.
func newGenFile(sh *shared, content func(ctx context.Context) ([]byte, error)) *genFile {
	return &genFile{sh: sh, content: content}
}

type snapshot struct{ data []byte }

// Open implements fs.NodeOpener.
func (g *genFile) Open(ctx context.Context, flags uint32) (fh gofs.FileHandle, fuseFlags uint32, errno syscall.Errno) {
	defer g.sh.guard("open", g.Path(nil), &errno)
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES
	}
	b, err := g.content(ctx)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return &snapshot{data: b}, fuse.FOPEN_DIRECT_IO, 0
}

// Read implements fs.NodeReader.
func (g *genFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (res fuse.ReadResult, errno syscall.Errno) {
	defer g.sh.guard("read", g.Path(nil), &errno)
	s, ok := fh.(*snapshot)
	if !ok {
		return nil, syscall.EBADF
	}
	if off >= int64(len(s.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := off + int64(len(dest))
	if end > int64(len(s.data)) {
		end = int64(len(s.data))
	}
	return fuse.ReadResultData(s.data[off:end]), 0
}

// genEntry answers a lookup of g: its attributes now, and a timeout that
// sends every later stat back to Getattr (the content, and so the size,
// may change at any time).
func genEntry(ctx context.Context, g *genFile, out *fuse.EntryOut) {
	var a fuse.AttrOut
	g.Getattr(ctx, nil, &a)
	out.Attr = a.Attr
	out.SetAttrTimeout(a.Timeout())
}

// lookupChild is a lookup among parent's fixed children (added with
// AddChild) that keeps each child's own attribute timeout. go-fuse's
// default lookup of such children takes only their attributes and applies
// the mount's (an hour), so `stat .zenith/errors` showed a size up to an
// hour old; with this, a generated file's stat is as fresh as its content.
func lookupChild(ctx context.Context, parent *gofs.Inode, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	child := parent.GetChild(name)
	if child == nil {
		return nil, syscall.ENOENT
	}
	if ga, ok := child.Operations().(gofs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
		out.Attr = a.Attr
		out.SetAttrTimeout(a.Timeout())
	}
	out.SetEntryTimeout(ctlEntryTimeout)
	if out.AttrTimeout() == 0 {
		out.SetAttrTimeout(ctlAttrTimeout)
	}
	return child, 0
}

// fixedDir is a directory of fixed children (.zenith/datasets) looked up
// with lookupChild.
type fixedDir struct {
	gofs.Inode
	readOnlyDir
	sh *shared
}

var (
	_ = (gofs.NodeLookuper)((*fixedDir)(nil))
	_ = (gofs.NodeGetattrer)((*fixedDir)(nil))
)

// Lookup implements fs.NodeLookuper.
func (d *fixedDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return lookupChild(ctx, &d.Inode, name, out)
}

// Getattr implements fs.NodeGetattrer.
func (d *fixedDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.sh.dirAttr(&out.Attr, 0o755)
	return 0
}

// attr fills a's mode, link count and size: that of the content the
// handle fh took, or (no handle) of the content now.
func (g *genFile) attr(ctx context.Context, fh gofs.FileHandle, a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	if s, ok := fh.(*snapshot); ok {
		a.Size = uint64(len(s.data))
	} else if b, err := g.content(ctx); err == nil {
		a.Size = uint64(len(b))
	}
}

// Getattr implements fs.NodeGetattrer: the size of the content right now.
func (g *genFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer g.sh.guard("getattr", g.Path(nil), &errno)
	g.attr(ctx, fh, &out.Attr)
	// 0 would mean "the mount's default" (an hour) to go-fuse: ask the
	// kernel to come back for every stat instead.
	out.SetTimeout(time.Nanosecond)
	return 0
}
