package fs

import (
	"context"
	"encoding/json"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/zenithfs/zenithfs/dataset"
)

// zenithDir is MOUNT/.zenith: the control tree.
type zenithDir struct {
	gofs.Inode
	readOnlyDir
	sh  *shared
	cfg Config
}

var (
	_ = (gofs.NodeOnAdder)((*zenithDir)(nil))
	_ = (gofs.NodeGetattrer)((*zenithDir)(nil))
	_ = (gofs.NodeLookuper)((*zenithDir)(nil))
)

// Lookup implements fs.NodeLookuper: the control files' sizes change, and
// their stat must say so (lookupChild).
func (z *zenithDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return lookupChild(ctx, &z.Inode, name, out)
}

// Getattr implements fs.NodeGetattrer.
func (z *zenithDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	z.sh.dirAttr(&out.Attr, 0o755)
	return 0
}

func newZenithDir(sh *shared, cfg Config) *zenithDir { return &zenithDir{sh: sh, cfg: cfg} }

// OnAdd builds the fixed part of the control tree.
func (z *zenithDir) OnAdd(ctx context.Context) {
	file := func(content func(context.Context) ([]byte, error)) *gofs.Inode {
		return z.NewPersistentInode(ctx, newGenFile(z.sh, content), gofs.StableAttr{Mode: syscall.S_IFREG})
	}
	stats := z.cfg.Stats
	if stats == nil {
		stats = func() ([]byte, error) { return []byte("{}\n"), nil }
	}
	z.AddChild("stats", file(func(context.Context) ([]byte, error) { return stats() }), false)
	z.AddChild("errors", file(func(context.Context) ([]byte, error) { return z.sh.errs.text(), nil }), false)
	dsDir := z.NewPersistentInode(ctx, &fixedDir{sh: z.sh}, gofs.StableAttr{Mode: syscall.S_IFDIR})
	z.AddChild("datasets", dsDir, false)
	for _, d := range z.cfg.Datasets {
		dsDir.AddChild(d.Name, file(func(context.Context) ([]byte, error) {
			return datasetState(d, viewStatsOf(z.Root(), d.Name))
		}), false)
	}
	z.addJobs(ctx)
}

// DatasetState is the content of .zenith/datasets/<name>.
type DatasetState struct {
	Name  string `json:"name"`
	State string `json:"state"` // ready | error
	Error string `json:"error,omitempty"`
	// ListError: the latest source check could not list the sources (the
	// snapshot shown is still served).
	ListError   string `json:"list_error,omitempty"`
	ID          string `json:"id,omitempty"`
	Generation  uint64 `json:"generation,omitempty"`
	Rows        int64  `json:"rows"`
	Batches     int    `json:"batches"`
	BatchSize   int64  `json:"batch_size,omitempty"`
	Files       int    `json:"files"`
	IndexMillis int64  `json:"index_ms"`
	// Index is the latest index pass's progress (the first, or a re-index
	// after a change: running while it lasts).
	Index       dataset.IndexProgress `json:"index"`
	FromCache   bool                  `json:"index_from_cache"`
	BatchErrors map[int]string        `json:"batch_errors,omitempty"`
	SegHits     uint64                `json:"segment_cache_hits"`
	SegMisses   uint64                `json:"segment_cache_misses"`
	SegBytes    int64                 `json:"segment_cache_bytes"`
	// Blocks: block-shuffled views' built blocks, shared by all the views.
	Blocks dataset.BlockStats `json:"blocks"`
	// Views: reads and prefetch hits per view (canonical spec).
	Views map[string]ViewStats `json:"views,omitempty"`
}

func datasetState(d *dataset.Dataset, views map[string]ViewStats) ([]byte, error) {
	st := DatasetState{Name: d.Name, State: "ready", Views: views, Index: d.Progress(), Blocks: d.BlockStats()}
	st.SegHits, st.SegMisses, st.SegBytes = d.SegmentStats()
	if err := d.ListErr(); err != nil {
		st.ListError = err.Error()
	}
	if s, err := d.Current(); err != nil {
		st.State, st.Error = "error", err.Error()
	} else {
		st.ID, st.Generation, st.Rows, st.Batches, st.BatchSize = s.ID, s.Gen, s.Rows, s.NumBatches(), s.BatchSize
		st.Files, st.IndexMillis, st.FromCache = len(s.Files), s.IndexedIn.Milliseconds(), s.FromCache
		for k, e := range s.BatchErrors() {
			if st.BatchErrors == nil {
				st.BatchErrors = map[int]string{}
			}
			st.BatchErrors[k] = e.Error()
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	return append(b, '\n'), err
}
