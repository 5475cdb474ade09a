package fs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"golang.org/x/sys/unix"

	"github.com/zenithfs/zenithfs/blob"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/prefetch"
	"github.com/zenithfs/zenithfs/scheduler"
)

// Batches serves the bytes of batch files; the prefetch store in production.
type Batches interface {
	// Get returns file k of view v. reader names whose read order this is,
	// so that read-ahead follows it.
	Get(ctx context.Context, v prefetch.View, k int, reader string) (*blob.Blob, error)
}

// direct builds every batch on demand: no cache, no read-ahead.
type direct struct{}

func (direct) Get(ctx context.Context, v prefetch.View, k int, _ string) (*blob.Blob, error) {
	b, err := v.Build(ctx, k)
	if err != nil {
		return nil, err
	}
	return blob.Bytes(b), nil
}

// Config is what a mount serves.
type Config struct {
	Datasets  []*dataset.Dataset
	Batches   Batches              // nil: build on demand, uncached
	Scheduler *scheduler.Scheduler // nil: no jobs tree
	// Stats returns the JSON for .zenith/stats.
	Stats  func() ([]byte, error)
	Logger *slog.Logger
	// Owner is the uid allowed (with root) to submit and cancel jobs.
	Owner uint32
	// AllowOther lets other users see the mount (needs user_allow_other for non-root).
	AllowOther bool
	// EntryTimeout and AttrTimeout for dataset files (default 1h: they are immutable).
	EntryTimeout time.Duration
	Debug        bool
	// Passthrough lets the kernel read batch files from memfds itself
	// (FUSE passthrough) where it allows; see passthrough.go.
	Passthrough bool
	// Faults is a test hook called at the start of dataset handlers.
	Faults func(op, name string)
}

// Mount mounts the tree at dir and returns the running server; the caller
// waits on it and unmounts it.
func Mount(dir string, cfg Config) (*fuse.Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Batches == nil {
		cfg.Batches = direct{}
	}
	if cfg.EntryTimeout == 0 {
		cfg.EntryTimeout = time.Hour
	}
	sh := &shared{log: cfg.Logger, owner: cfg.Owner, errs: newErrorRing(200), faults: cfg.Faults, start: time.Now()}
	root := &rootNode{sh: sh, cfg: cfg}
	neg := time.Duration(0)
	opts := &gofs.Options{
		EntryTimeout:    &cfg.EntryTimeout,
		AttrTimeout:     &cfg.EntryTimeout,
		NegativeTimeout: &neg,
		UID:             cfg.Owner,
		MountOptions: fuse.MountOptions{
			FsName:       "zenithfs",
			Name:         "zenithfs",
			DirectMount:  os.Geteuid() == 0,
			AllowOther:   cfg.AllowOther,
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			// Many requests in flight keep prefetched batches flowing.
			MaxBackground: 64,
			Debug:         cfg.Debug,
			PanicHandler: func(r any) fuse.Status {
				cfg.Logger.Error("panic in FUSE handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				sh.errs.add(fmt.Sprintf("panic in FUSE handler: %v", r))
				return fuse.EIO
			},
		},
	}
	srv, err := gofs.Mount(dir, root, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if err := closeDevFuseOnExec(); err != nil {
		cfg.Logger.Warn("jobs may inherit the FUSE connection", "err", err)
	}
	return srv, nil
}

// closeDevFuseOnExec marks every /dev/fuse descriptor of the process
// close-on-exec. go-fuse's direct mount (as root) leaves the connection's
// descriptor inheritable, so every job the daemon started held the
// connection open: after a daemon crash the kernel never saw the mount's
// server go, and the dead mount hung its callers (umount's own stat
// included) until the last job ended, instead of failing with ENOTCONN.
func closeDevFuseOnExec() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || target != "/dev/fuse" {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return fmt.Errorf("close-on-exec for fd %d: %w", fd, err)
		}
	}
	return nil
}

// rootNode is the mount's root: one directory per dataset and .zenith.
type rootNode struct {
	gofs.Inode
	readOnlyDir
	sh  *shared
	cfg Config
}

var (
	_ = (gofs.NodeOnAdder)((*rootNode)(nil))
	_ = (gofs.NodeGetattrer)((*rootNode)(nil))
)

// Getattr implements fs.NodeGetattrer.
func (r *rootNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.sh.dirAttr(&out.Attr, 0o755)
	return 0
}

// OnAdd builds the fixed part of the tree.
func (r *rootNode) OnAdd(ctx context.Context) {
	for _, d := range r.cfg.Datasets {
		if err := d.Err(); err != nil { // a dataset that could not be loaded says why at once
			r.sh.errs.add(err.Error())
		}
		dir := &datasetDir{sh: r.sh, ds: d, batches: r.cfg.Batches, timeout: r.cfg.EntryTimeout, passthrough: r.cfg.Passthrough}
		r.AddChild(d.Name, r.NewPersistentInode(ctx, dir, gofs.StableAttr{Mode: syscall.S_IFDIR}), false)
	}
	r.AddChild(".zenith", r.NewPersistentInode(ctx, newZenithDir(r.sh, r.cfg), gofs.StableAttr{Mode: syscall.S_IFDIR}), false)
}

// readOnlyFile refuses changes to a read-only file's attributes (truncate,
// chmod, utimes, extended attributes) with EROFS, as its writes are
// refused.
type readOnlyFile struct{ readOnlyXattrs }

var _ = (gofs.NodeSetattrer)((*readOnlyFile)(nil))

func (readOnlyFile) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// readOnlyXattrs refuses setting or removing extended attributes with
// EROFS (reading them finds none).
type readOnlyXattrs struct{}

var (
	_ = (gofs.NodeSetxattrer)((*readOnlyXattrs)(nil))
	_ = (gofs.NodeRemovexattrer)((*readOnlyXattrs)(nil))
)

func (readOnlyXattrs) Setxattr(context.Context, string, []byte, uint32) syscall.Errno {
	return syscall.EROFS
}
func (readOnlyXattrs) Removexattr(context.Context, string) syscall.Errno { return syscall.EROFS }

// readOnlyDir refuses every namespace change with EROFS. Embedded by the
// dataset tree's directories.
type readOnlyDir struct{ readOnlyXattrs }

var (
	_ = (gofs.NodeCreater)((*readOnlyDir)(nil))
	_ = (gofs.NodeMkdirer)((*readOnlyDir)(nil))
	_ = (gofs.NodeUnlinker)((*readOnlyDir)(nil))
	_ = (gofs.NodeRmdirer)((*readOnlyDir)(nil))
	_ = (gofs.NodeRenamer)((*readOnlyDir)(nil))
	_ = (gofs.NodeSymlinker)((*readOnlyDir)(nil))
	_ = (gofs.NodeMknoder)((*readOnlyDir)(nil))
	_ = (gofs.NodeLinker)((*readOnlyDir)(nil))
)

func (readOnlyDir) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (readOnlyDir) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnlyDir) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }
func (readOnlyDir) Rmdir(context.Context, string) syscall.Errno  { return syscall.EROFS }
func (readOnlyDir) Rename(context.Context, string, gofs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}
func (readOnlyDir) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnlyDir) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnlyDir) Link(context.Context, gofs.InodeEmbedder, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
