package fs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/zenithfs/zenithfs/blob"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/prefetch"
)

const (
	manifestName = "_manifest.json"
	schemaName   = "_schema.arrow"
	viewsName    = "views"
	batchExt     = ".arrow"
)

// datasetDir is MOUNT/<dataset>/: batch files, the schema file and the
// manifest, all of the dataset's current snapshot.
type datasetDir struct {
	gofs.Inode
	readOnlyDir
	sh      *shared
	ds      *dataset.Dataset
	batches Batches
	timeout time.Duration
	// passthrough: open handles offer a memfd for FUSE passthrough.
	passthrough bool

	// kernelGen is the newest generation whose change the kernel has been
	// told of. Lookups read it without a lock: they must never wait on
	// invMu, whose holder may be waiting, in the kernel, on their directory.
	kernelGen atomic.Uint64
	invMu     sync.Mutex // serializes invalidations
}

var (
	_ = (gofs.NodeLookuper)((*datasetDir)(nil))
	_ = (gofs.NodeReaddirer)((*datasetDir)(nil))
	_ = (gofs.NodeGetattrer)((*datasetDir)(nil))
)

// snapshot checks the sources (rate-limited by the dataset) and, when the
// generation moved on, has the kernel's entries under this directory
// dropped in the background: snapshot is called from lookups and readdirs,
// which hold the directory's lock that the kernel's invalidation takes.
func (d *datasetDir) snapshot(ctx context.Context) (*dataset.Snapshot, error) {
	s, err := d.ds.Check(ctx)
	if err != nil {
		d.sh.errs.add(err.Error())
		return nil, err
	}
	if s.Gen > d.kernelGen.Load() {
		go d.invalidate(s.Gen)
	}
	return s, nil
}

// invalidate drops the kernel's cached entries (and with them the cached
// sizes) of every file under this directory, views included, unless that
// was already done for gen. It returns when the kernel has dropped them,
// so it must not run inside a request that holds a lock on one of these
// directories (lookup, readdir); an open holds none. While it waits on the
// kernel, lookups in these directories must be able to complete: nothing
// they do may wait on invMu.
func (d *datasetDir) invalidate(gen uint64) {
	d.invMu.Lock()
	defer d.invMu.Unlock()
	old := d.kernelGen.Load()
	if gen <= old {
		return
	}
	if old != 0 {
		d.sh.log.Info("dataset changed; invalidating kernel entries", "dataset", d.ds.Name, "generation", gen)
		dropEntries(&d.Inode)
	}
	d.kernelGen.Store(gen)
}

// dropEntries makes the kernel forget the entry of every file under n.
func dropEntries(n *gofs.Inode) {
	for name, ch := range n.Children() {
		if ch.IsDir() {
			dropEntries(ch)
			continue
		}
		n.NotifyEntry(name)
	}
}

// Getattr implements fs.NodeGetattrer.
func (d *datasetDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.sh.dirAttr(&out.Attr, 0o555)
	return 0
}

func batchName(k, n int) string {
	w := max(6, len(strconv.Itoa(n-1)))
	return fmt.Sprintf("%0*d%s", w, k, batchExt)
}

// parseBatchName returns k for a well-formed name of a view with n files.
func parseBatchName(name string, n int) (int, bool) {
	stem, ok := strings.CutSuffix(name, batchExt)
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(stem)
	if err != nil || k < 0 || k >= n || batchName(k, n) != name {
		return 0, false
	}
	return k, true
}

// inode is a stable inode number for the node named by parts. Each part
// is written quoted and terminated, so that no two lists of parts hash the
// same text ("epoch=1", 17 and "epoch=11", 7 once did: go-fuse then handed
// one path the other's node and bytes).
func inode(parts ...any) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		fmt.Fprintf(h, "%q\x00", fmt.Sprint(p))
	}
	return h.Sum64() | 1<<63 // never collides with go-fuse's small automatic numbers
}

// Lookup implements fs.NodeLookuper.
func (d *datasetDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.sh.fault("lookup", name)
	s, err := d.snapshot(ctx)
	if err != nil {
		return nil, toErrno(err)
	}
	out.SetEntryTimeout(d.timeout)
	out.SetAttrTimeout(d.timeout)
	switch name {
	case manifestName:
		// Generated at each open from the snapshot current then, so that it
		// is never older than the batch files beside it: a dentry the
		// kernel holds for an hour must not pin an old generation's text.
		m := newGenFile(d.sh, func(ctx context.Context) ([]byte, error) {
			s, err := d.snapshot(ctx)
			if err != nil {
				return nil, err
			}
			return s.ManifestJSON(), nil
		})
		ino := d.NewInode(ctx, m, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: inode(d.ds.Name, manifestName)})
		genEntry(ctx, m, out)
		return ino, 0
	case schemaName:
		return d.bytesChild(ctx, s.SchemaFile(), out, d.ds.Name, s.ID, schemaName), 0
	case viewsName:
		return d.viewsChild(ctx, s, out)
	}
	k, ok := parseBatchName(name, s.NumBatches())
	if !ok {
		return nil, syscall.ENOENT
	}
	f := &batchFile{sh: d.sh, dir: d, snap: s, view: s, k: k, reader: d.ds.Name}
	f.attr(&out.Attr)
	return d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: inode(d.ds.Name, s.ID, s.Gen, k)}), 0
}

func (d *datasetDir) bytesChild(ctx context.Context, b []byte, out *fuse.EntryOut, id ...any) *gofs.Inode {
	f := &bytesFile{data: b}
	f.attr(&out.Attr)
	return d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: inode(id...)})
}

// Readdir implements fs.NodeReaddirer.
func (d *datasetDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d.sh.fault("readdir", d.ds.Name)
	s, err := d.snapshot(ctx)
	if err != nil {
		return nil, toErrno(err)
	}
	return &batchDirStream{n: s.NumBatches(), extra: []string{manifestName, schemaName}}, 0
}

// batchDirStream lists a dataset directory without materialising the names.
type batchDirStream struct {
	extra []string
	n, i  int
}

func (s *batchDirStream) HasNext() bool { return s.i < len(s.extra)+s.n }

func (s *batchDirStream) Next() (fuse.DirEntry, syscall.Errno) {
	i := s.i
	s.i++
	if i < len(s.extra) {
		return fuse.DirEntry{Name: s.extra[i], Mode: syscall.S_IFREG}, 0
	}
	return fuse.DirEntry{Name: batchName(i-len(s.extra), s.n), Mode: syscall.S_IFREG}, 0
}

func (s *batchDirStream) Close() {}

// batchFile is one batch file of a view of a snapshot. Its bytes are
// fetched whole at open and held by the handle: reads at any offset then
// come from one consistent copy, and the page cache is kept across opens.
type batchFile struct {
	gofs.Inode
	readOnlyXattrs
	sh     *shared
	dir    *datasetDir
	snap   *dataset.Snapshot
	view   prefetch.View
	k      int
	reader string // read-order scope: dataset or view path
	size   func() (int64, error)
	count  *viewCounters // per-view read statistics; nil for the dataset's own files
}

var (
	_ = (gofs.NodeGetattrer)((*batchFile)(nil))
	_ = (gofs.NodeOpener)((*batchFile)(nil))
	_ = (gofs.NodeReader)((*batchFile)(nil))
	_ = (gofs.NodeSetattrer)((*batchFile)(nil))
)

func (f *batchFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	var n int64
	var err error
	if f.size != nil {
		n, err = f.size()
	} else {
		n, err = f.snap.Size(f.k)
	}
	if err == nil {
		a.Size = uint64(n)
	}
	t := uint64(f.sh.start.Unix())
	if len(f.snap.Files) > 0 {
		t = uint64(f.snap.Files[len(f.snap.Files)-1].Info.ModTime.Unix())
	}
	a.Mtime, a.Ctime, a.Atime = t, t, t
	a.Blksize = 1 << 20
	a.Blocks = (a.Size + 511) / 512
}

// Getattr implements fs.NodeGetattrer.
func (f *batchFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	out.SetTimeout(f.dir.timeout)
	return 0
}

// Setattr implements fs.NodeSetattrer: files are read-only.
func (f *batchFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Open implements fs.NodeOpener.
func (f *batchFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	f.sh.fault("open", f.Path(nil))
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	s, err := f.dir.snapshot(ctx)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	if s.Gen != f.snap.Gen {
		// The sources changed since the kernel looked this name up: make
		// it look again (open retries the lookup on ESTALE), and have it
		// forget the sizes of this generation's other files before the
		// caller can stat them.
		f.dir.invalidate(s.Gen)
		return nil, 0, syscall.ESTALE
	}
	reader := f.reader
	if c, ok := fuse.FromContext(ctx); ok {
		reader = fmt.Sprintf("%d:%s", c.Pid, f.reader)
	}
	getCtx, done := ctx, func(error) {}
	if f.count != nil {
		getCtx, done = f.count.begin(ctx, f.k)
	}
	b, err := f.dir.batches.Get(getCtx, f.view, f.k, reader)
	done(err)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// The caller was interrupted by a signal (the kernel sent
		// FUSE_INTERRUPT): EINTR, and no error of the mount's. The
		// batch's build goes on; a retried open finds it built or in
		// flight.
		f.sh.log.Debug("open interrupted", "file", f.Path(nil))
		return nil, 0, syscall.EINTR
	}
	if err != nil {
		f.sh.log.Error("batch read failed", "file", f.Path(nil), "err", err)
		f.sh.errs.add(fmt.Sprintf("read %s: %v", f.Path(nil), err))
		if isChanged(err) {
			if s, err := f.dir.ds.Recheck(context.WithoutCancel(ctx)); err == nil {
				f.dir.invalidate(s.Gen)
			}
			return nil, 0, syscall.ESTALE
		}
		return nil, 0, toErrno(err)
	}
	if f.dir.passthrough {
		return newPassthroughHandle(b), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	return &blobHandle{b: b}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// Read implements fs.NodeReader.
func (f *batchFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.sh.fault("read", f.dir.ds.Name)
	var h *blobHandle
	switch fh := fh.(type) {
	case *blobHandle:
		h = fh
	case *passthroughHandle:
		h = &fh.blobHandle
	default:
		return nil, syscall.EBADF
	}
	r, err := h.read(dest, off)
	if err != nil {
		f.sh.log.Error("batch read failed", "file", f.Path(nil), "err", err)
		f.sh.errs.add(fmt.Sprintf("read %s: %v", f.Path(nil), err))
		return nil, toErrno(err)
	}
	return r, 0
}

// blobHandle is an open file's bytes: one consistent copy for its lifetime.
type blobHandle struct{ b *blob.Blob }

func (h *blobHandle) read(dest []byte, off int64) (fuse.ReadResult, error) {
	d, err := h.b.Slice(dest, off, len(dest))
	if err != nil {
		return nil, err
	}
	return fuse.ReadResultData(d), nil
}

// bytesFile is a small immutable file held in memory (schema, manifest).
type bytesFile struct {
	gofs.Inode
	readOnlyFile
	data []byte
}

var (
	_ = (gofs.NodeGetattrer)((*bytesFile)(nil))
	_ = (gofs.NodeOpener)((*bytesFile)(nil))
	_ = (gofs.NodeReader)((*bytesFile)(nil))
)

func (f *bytesFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.Size = uint64(len(f.data))
}

// Getattr implements fs.NodeGetattrer.
func (f *bytesFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	return 0
}

// Open implements fs.NodeOpener.
func (f *bytesFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	return &blobHandle{b: blob.Bytes(f.data)}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// Read implements fs.NodeReader.
func (f *bytesFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	end := min(off+int64(len(dest)), int64(len(f.data)))
	if off >= end {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(f.data[off:end]), 0
}
