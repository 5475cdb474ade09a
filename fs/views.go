package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/zenithfs/zenithfs/dataset"
)

// Views: MOUNT/<dataset>/views/<spec>/ is a directory of batch files cut
// from the dataset's current snapshot by a dataset.ViewSpec (a shuffled
// epoch, a rank's share, npz files). Any valid spec resolves on lookup;
// the listing of views/ shows a few examples and a README. A view file is
// a batchFile whose view is the dataset.View and whose reader scope is the
// view's path, so the prefetcher reads ahead in the view's order. Views
// are kept per (generation, canonical spec) so every file of one view
// shares one dataset.View: its memoized sizes and built blocks, and one
// read order for the prefetcher.

const viewsReadme = `Views of this dataset: <dataset>/views/<spec>/ is a directory of batch files,
where <spec> is comma-separated key=value pairs in any order:
  seed=S,epoch=E            a deterministic shuffled epoch (same path, same bytes)
  shuffle=batch|block:K     permute whole batches (default), or rows within blocks of K batches
  rank=R,world=W            this rank's share: files j with j%W==R, j < floor(n/W)*W
  format=npz                each batch as NNNNNN.npz for numpy.load (default: .arrow)
Example: views/seed=1,epoch=3,rank=0,world=8/000000.arrow
`

// viewStatsName is views/_stats.json: per-view reads and prefetch hits.
const viewStatsName = "_stats.json"

// viewExamples are listed under views/; they are cheap to stat (their
// files are natural batches whose sizes the index knows).
var viewExamples = []string{"seed=0,epoch=0", "seed=0,epoch=0,rank=0,world=2"}

// maxViews bounds the views kept per dataset.
const maxViews = 64

// viewsDir is MOUNT/<dataset>/views. It is persistent: it holds the
// dataset's live views and their read statistics.
type viewsDir struct {
	gofs.Inode
	readOnlyDir
	d *datasetDir

	mu    sync.Mutex // guards views, order, stats; a leaf lock
	views map[string]*dataset.View
	order []string // keys of views, oldest first
	stats map[string]*viewCounters
	// statsOrder is the keys of stats, oldest first: at most maxViewStats
	// specs are counted (every epoch and rank is a spec of its own).
	statsOrder []string
}

// maxViewStats bounds the specs views/_stats.json reports, the most
// recently first read ones.
const maxViewStats = 256

var (
	_ = (gofs.NodeLookuper)((*viewsDir)(nil))
	_ = (gofs.NodeReaddirer)((*viewsDir)(nil))
	_ = (gofs.NodeGetattrer)((*viewsDir)(nil))
)

// viewsChild returns the node for MOUNT/<dataset>/views.
func (d *datasetDir) viewsChild(ctx context.Context, s *dataset.Snapshot, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	out.Attr.Mode = syscall.S_IFDIR | 0o555
	if c := d.GetChild(viewsName); c != nil {
		return c, 0
	}
	vd := &viewsDir{d: d, views: map[string]*dataset.View{}, stats: map[string]*viewCounters{}}
	return d.NewPersistentInode(ctx, vd, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inode(d.ds.Name, viewsName)}), 0
}

// Getattr implements fs.NodeGetattrer.
func (v *viewsDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	return 0
}

// Readdir implements fs.NodeReaddirer: a README, the statistics and a
// few example views.
func (v *viewsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ents := []fuse.DirEntry{{Name: "README", Mode: syscall.S_IFREG}, {Name: viewStatsName, Mode: syscall.S_IFREG}}
	s, err := v.d.snapshot(ctx)
	if err != nil {
		return nil, toErrno(err)
	}
	if s.NumBatches() >= 2 {
		for _, e := range viewExamples {
			ents = append(ents, fuse.DirEntry{Name: e, Mode: syscall.S_IFDIR})
		}
	}
	return gofs.NewListDirStream(ents), 0
}

// Lookup implements fs.NodeLookuper: README, _stats.json, or any valid
// view spec.
func (v *viewsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	v.d.sh.fault("lookup", name)
	switch name {
	case "README":
		return v.d.bytesChild(ctx, []byte(viewsReadme), out, v.d.ds.Name, viewsName, name), 0
	case viewStatsName:
		g := newGenFile(v.d.sh, func(context.Context) ([]byte, error) {
			b, err := json.MarshalIndent(v.d.ViewStats(), "", "  ")
			return append(b, '\n'), err
		})
		ino := v.NewInode(ctx, g, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: inode(v.d.ds.Name, viewsName, name)})
		genEntry(ctx, g, out)
		return ino, 0
	}
	s, err := v.d.snapshot(ctx)
	if err != nil {
		return nil, toErrno(err)
	}
	view, errno := v.view(s, name)
	if errno != 0 {
		return nil, errno
	}
	out.Attr.Mode = syscall.S_IFDIR | 0o555
	out.SetEntryTimeout(v.d.timeout)
	out.SetAttrTimeout(v.d.timeout)
	vd := &viewDir{vs: v, spec: view.Spec()}
	return v.NewInode(ctx, vd, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inode(v.d.ds.Name, viewsName, name)}), 0
}

// view returns the dataset.View of name over snapshot s. A bad spec is
// logged and answered EINVAL when it looks like a spec (has '='), ENOENT
// otherwise (tools probe names such as .git).
func (v *viewsDir) view(s *dataset.Snapshot, name string) (*dataset.View, syscall.Errno) {
	spec, err := dataset.ParseViewSpec(name)
	var view *dataset.View
	if err == nil {
		view, err = v.viewOf(s, spec)
	}
	if err == nil {
		return view, 0
	}
	if !strings.Contains(name, "=") {
		v.d.sh.log.Debug("not a view spec", "dataset", v.d.ds.Name, "name", name)
		return nil, syscall.ENOENT
	}
	v.d.sh.log.Warn("bad view spec", "dataset", v.d.ds.Name, "err", err)
	v.d.sh.errs.add(fmt.Sprintf("%s/views: %v", v.d.ds.Name, err))
	if errors.Is(err, dataset.ErrBadView) {
		return nil, syscall.EINVAL
	}
	return nil, toErrno(err)
}

// viewOf returns the view of spec over s, shared by every lookup of the
// same canonical spec in the same generation.
func (v *viewsDir) viewOf(s *dataset.Snapshot, spec dataset.ViewSpec) (*dataset.View, error) {
	key := fmt.Sprintf("%d/%s", s.Gen, spec)
	v.mu.Lock()
	view, ok := v.views[key]
	v.mu.Unlock()
	if ok {
		return view, nil
	}
	view, err := s.View(spec)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if old, ok := v.views[key]; ok {
		return old, nil
	}
	v.views[key] = view
	v.order = append(v.order, key)
	gen := fmt.Sprintf("%d/", s.Gen)
	for len(v.order) > maxViews || (len(v.order) > 1 && !strings.HasPrefix(v.order[0], gen)) {
		delete(v.views, v.order[0])
		v.order = v.order[1:]
	}
	return view, nil
}

// counters returns the read statistics of a canonical spec.
func (v *viewsDir) counters(spec string) *viewCounters {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.stats[spec]
	if !ok {
		c = &viewCounters{lookupBuilt: map[int]bool{}}
		v.stats[spec] = c
		v.statsOrder = append(v.statsOrder, spec)
		if len(v.statsOrder) > maxViewStats {
			delete(v.stats, v.statsOrder[0])
			v.statsOrder = v.statsOrder[1:]
		}
	}
	return c
}

// viewDir is MOUNT/<dataset>/views/<spec>: the view's batch files.
type viewDir struct {
	gofs.Inode
	readOnlyDir
	vs   *viewsDir
	spec dataset.ViewSpec
}

var (
	_ = (gofs.NodeLookuper)((*viewDir)(nil))
	_ = (gofs.NodeOpendirHandler)((*viewDir)(nil))
	_ = (gofs.NodeGetattrer)((*viewDir)(nil))
)

// current returns the snapshot and this directory's view of it.
func (vd *viewDir) current(ctx context.Context) (*dataset.Snapshot, *dataset.View, syscall.Errno) {
	d := vd.vs.d
	s, err := d.snapshot(ctx)
	if err != nil {
		return nil, nil, toErrno(err)
	}
	view, err := vd.vs.viewOf(s, vd.spec)
	if err != nil {
		// the spec parsed, but no longer fits the dataset (e.g. world > batches)
		d.sh.log.Warn("view no longer applies", "view", vd.scope(), "err", err)
		d.sh.errs.add(fmt.Sprintf("%s: %v", vd.scope(), err))
		return nil, nil, syscall.EINVAL
	}
	return s, view, 0
}

// Getattr implements fs.NodeGetattrer.
func (vd *viewDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	return 0
}

// scope is the view's path below the mount: the prefetcher's reader scope
// and the key of its statistics.
func (vd *viewDir) scope() string { return vd.vs.d.ds.Name + "/views/" + vd.spec.String() }

// Lookup implements fs.NodeLookuper.
func (vd *viewDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d := vd.vs.d
	d.sh.fault("lookup", name)
	s, view, errno := vd.current(ctx)
	if errno != 0 {
		return nil, errno
	}
	k, ok := parseViewFileName(name, view.NumBatches(), view.Ext())
	if !ok {
		return nil, syscall.ENOENT
	}
	cnt := vd.vs.counters(vd.spec.String())
	if _, known := view.KnownSize(k); !known {
		// The size is known once the file is built: build it through the
		// store, in this reader's order, so the open that follows finds it.
		var built bool
		bctx := dataset.WithBuildNotice(ctx, func() { built = true })
		b, err := d.batches.Get(bctx, view, k, readerName(ctx, vd.scope()))
		if err != nil {
			d.sh.log.Error("view file build failed", "file", vd.scope()+"/"+name, "err", err)
			d.sh.errs.add(fmt.Sprintf("read %s/%s: %v", vd.scope(), name, err))
			cnt.errors.Add(1)
			if isChanged(err) {
				// Check the sources now, as an open does, so that the
				// kernel's retry finds the new generation rather than the
				// same stale snapshot until the next periodic check. The
				// kernel's entries are dropped in the background: this
				// lookup holds the directory's lock (datasetDir.snapshot).
				if s, err := d.ds.Recheck(context.WithoutCancel(ctx)); err == nil {
					go d.invalidate(s.Gen)
				}
				return nil, syscall.ESTALE
			}
			return nil, toErrno(err)
		}
		if built {
			cnt.markBuilt(k)
		} else {
			// From the cache (another view with the same file's key):
			// its length is the size, which this view has not seen.
			view.NoteSize(k, b.Len())
		}
	}
	f := &batchFile{sh: d.sh, dir: d, snap: s, view: view, k: k, reader: vd.scope(), count: cnt,
		size: func() (int64, error) { return view.Size(context.Background(), k) }}
	f.attr(&out.Attr)
	out.SetEntryTimeout(d.timeout)
	out.SetAttrTimeout(d.timeout)
	return vd.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: inode(d.ds.Name, s.ID, s.Gen, vd.spec.String(), k)}), 0
}

// readerName is the prefetcher's reader: the calling process and a scope.
func readerName(ctx context.Context, scope string) string {
	if c, ok := fuse.FromContext(ctx); ok {
		return fmt.Sprintf("%d:%s", c.Pid, scope)
	}
	return scope
}

func viewFileName(k, n int, ext string) string {
	w := max(6, len(strconv.Itoa(n-1)))
	return fmt.Sprintf("%0*d%s", w, k, ext)
}

func parseViewFileName(name string, n int, ext string) (int, bool) {
	stem, ok := strings.CutSuffix(name, ext)
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(stem)
	if err != nil || k < 0 || k >= n || viewFileName(k, n, ext) != name {
		return 0, false
	}
	return k, true
}

// OpendirHandle implements fs.NodeOpendirHandler. The handle lists the
// view's files and, for READDIRPLUS, returns attributes only where sizes
// are free: a listing must not build every file of an npz or
// block-shuffled view (the kernel looks those up one by one on stat).
func (vd *viewDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	_, view, errno := vd.current(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	return &viewDirHandle{vd: vd, n: view.NumBatches(), ext: view.Ext(), free: view.SizesFree()}, 0, 0
}

// viewDirHandle is an open view directory.
type viewDirHandle struct {
	vd   *viewDir
	n, i int
	ext  string
	free bool
}

var (
	_ = (gofs.FileReaddirenter)((*viewDirHandle)(nil))
	_ = (gofs.FileLookuper)((*viewDirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*viewDirHandle)(nil))
)

// Readdirent implements fs.FileReaddirenter.
func (h *viewDirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.i >= h.n {
		return nil, 0
	}
	h.i++
	return &fuse.DirEntry{Name: viewFileName(h.i-1, h.n, h.ext), Mode: syscall.S_IFREG, Off: uint64(h.i)}, 0
}

// Seekdir implements fs.FileSeekdirer: offsets count entries.
func (h *viewDirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.i = int(min(off, uint64(h.n)))
	return 0
}

// Lookup implements fs.FileLookuper (READDIRPLUS).
func (h *viewDirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !h.free {
		return nil, syscall.ENOENT // no attributes: the kernel keeps the name only
	}
	return h.vd.Lookup(ctx, name, out)
}

// viewCounters are one view's read statistics.
type viewCounters struct {
	reads, hits, built, errors atomic.Uint64
	waitNanos                  atomic.Int64

	mu          sync.Mutex
	lookupBuilt map[int]bool // files built on demand by a lookup, not yet opened
}

func (c *viewCounters) markBuilt(k int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lookupBuilt) > 4096 {
		clear(c.lookupBuilt)
	}
	c.lookupBuilt[k] = true
}

// begin is called by batchFile.Open before it gets file k: it returns the
// context to get it with and a function to call with the outcome.
func (c *viewCounters) begin(ctx context.Context, k int) (context.Context, func(error)) {
	start := time.Now()
	var built atomic.Bool
	c.mu.Lock()
	if c.lookupBuilt[k] {
		built.Store(true)
		delete(c.lookupBuilt, k)
	}
	c.mu.Unlock()
	ctx = dataset.WithBuildNotice(ctx, func() { built.Store(true) })
	return ctx, func(err error) {
		c.reads.Add(1)
		c.waitNanos.Add(int64(time.Since(start)))
		switch {
		case err != nil:
			c.errors.Add(1)
		case built.Load():
			c.built.Add(1)
		default:
			c.hits.Add(1)
		}
	}
}
