package dataset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/source"
)

// indexVersion is part of every index key: bump it when the batch encoding
// or the index layout changes, so old persisted indexes are not trusted.
// The arrow-go module's version goes into the keys with it (indexKey): a
// build on another arrow-go may encode the same batch to other bytes.
const indexVersion = "zenithfs-index-3" // 2: IPC streams with dictionaries; 3: text files keep what inference saw

// arrowModule is the module whose version indexKey records.
const arrowModule = "github.com/apache/arrow-go/v18"

// indexKey is indexVersion followed by the version of arrow-go this binary
// was built with.
func indexKey() string {
	bi, _ := debug.ReadBuildInfo()
	return indexKeyOf(bi)
}

// indexKeyOf is indexKey for the build bi: "(unknown)" stands for the
// version where bi carries none (test binaries carry no dependencies).
func indexKeyOf(bi *debug.BuildInfo) string {
	ver := "(unknown)"
	if bi != nil {
		for _, m := range bi.Deps {
			if m.Path == arrowModule {
				ver = m.Version
				if m.Replace != nil {
					ver += " => " + m.Replace.Path + "@" + m.Replace.Version
				}
			}
		}
	}
	return indexVersion + " " + arrowModule + "@" + ver
}

// ErrChanged is returned when a source changed while a batch was built from
// it; the batch is discarded, never served.
var ErrChanged = errors.New("source changed while reading")

// ErrSchemaMismatch is wrapped when two source files have different schemas.
var ErrSchemaMismatch = errors.New("schemas differ")

// ErrNoSources is wrapped when a dataset location holds no supported file.
var ErrNoSources = errors.New("no supported source files")

// Options configure a dataset.
type Options struct {
	BatchSize int            // rows per batch (default 1024)
	Format    format.Options // CSV/JSONL schema, text segment size
	// StateDir, when set, persists indexes under StateDir/index so a second
	// mount of unchanged sources skips the index pass.
	StateDir string
	Workers  int // parallel index workers (default 1)
	// SegmentCacheBytes bounds decoded segments kept for reuse (default 64 MiB).
	SegmentCacheBytes int64
	// BlockBytes bounds the memory of block-shuffled views' built blocks
	// (default 256 MiB); a view whose block does not fit is refused. See
	// blockMemo.
	BlockBytes int64
	// Reserve, when set, is told of every change of the memory held by
	// built blocks (bytes, positive or negative), so that the caller can
	// take it from another share of its budget.
	Reserve func(delta int64)
	// CheckInterval is the least time between two source-change checks (0: every call).
	CheckInterval time.Duration
	// VerifyAfterBuild re-stats the sources of each batch after building it,
	// so a source rewritten mid-read is never served (cheap locally).
	VerifyAfterBuild bool
	Logger           *slog.Logger
	// Progress, when set, is called during the index pass.
	Progress func(name string, done, total int64)
	// Decode, when set, runs the independent tasks of decoding one
	// segment (a Parquet row group's columns), e.g. on a pool of
	// low-priority threads; nil decodes them one after another.
	Decode func(n int, task func(i int) error) error
	// Background, when set, runs read-ahead work (decoding the next source
	// segment) in the background, e.g. on a low-priority thread; nil
	// starts a goroutine.
	Background func(func())
	// ReadAhead is how many source segments after the one a batch ends in
	// are decoded ahead of a reader going through the batches in order
	// (default 1), with at most ReadAhead+1 being read ahead at once and
	// never more than the segment cache holds beside the segment in use.
	// For a store where each read waits on a round trip (S3), more than one
	// keeps several fetches in flight while the prefetch workers decode.
	ReadAhead int
	// CoalesceBytes, when positive, is the size of the spans that segments
	// read ahead in dataset order are fetched through (spans.go): for a
	// store where each request costs a round trip (S3). Half of
	// SegmentCacheBytes holds them.
	CoalesceBytes int64
}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 1024
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.SegmentCacheBytes <= 0 {
		o.SegmentCacheBytes = 64 << 20
	}
	if o.BlockBytes <= 0 {
		o.BlockBytes = 256 << 20
	}
	if o.ReadAhead <= 0 {
		o.ReadAhead = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Location names a dataset's sources within a store: one key (a single
// file), or a prefix (every supported file below it, in key order).
type Location struct {
	Store  source.Store
	Key    string // a single object, when Prefix is false
	Prefix bool
	// StoreID distinguishes stores in index keys (e.g. "file:/data" or "s3://bucket/prefix").
	StoreID string
}

// Dataset is one mounted dataset: sources, their index, and the current
// snapshot. It is safe for concurrent use.
type Dataset struct {
	Name string
	loc  Location
	opts Options
	log  *slog.Logger
	segs *segCache
	// key is indexKey(): part of every persisted index's key.
	key string
	// blocks holds block-shuffled views' built blocks, shared by every view.
	blocks *blockMemo
	// spans holds coalesced reads of the sources (nil: reads are exact).
	spans *spanCache

	mu      sync.Mutex // serialises loads and checks
	cur     atomic.Pointer[Snapshot]
	loadErr atomic.Pointer[error]
	// listErr is why the latest check could not list the sources (an S3
	// endpoint down) while a snapshot was being served: the snapshot stays
	// current, since nothing says its sources changed.
	listErr   atomic.Pointer[error]
	lastCheck time.Time
	gen       uint64
	progress  indexProgress
}

// indexProgress follows the latest index pass.
type indexProgress struct {
	running                   atomic.Bool
	filesDone, filesTotal     atomic.Int64
	batchesDone, batchesTotal atomic.Int64
}

// IndexProgress is how far the latest index pass got: source files
// indexed, and batches whose exact size is known (encoded once, or read
// from the state dir), of how many. Running: a pass is under way (the
// first, or a re-index after a change).
type IndexProgress struct {
	Running      bool  `json:"running"`
	FilesDone    int64 `json:"files_done"`
	FilesTotal   int64 `json:"files_total"`
	BatchesDone  int64 `json:"batches_done"`
	BatchesTotal int64 `json:"batches_total"`
}

// Progress returns the latest index pass's progress.
func (d *Dataset) Progress() IndexProgress {
	p := &d.progress
	return IndexProgress{Running: p.running.Load(), FilesDone: p.filesDone.Load(), FilesTotal: p.filesTotal.Load(),
		BatchesDone: p.batchesDone.Load(), BatchesTotal: p.batchesTotal.Load()}
}

// New returns a dataset; call Load before use.
func New(name string, loc Location, opts Options) *Dataset {
	opts.defaults()
	segBytes := opts.SegmentCacheBytes
	// Half the segment budget for spans: at a 512 MiB --cache-size, eight
	// 4 MiB spans, enough to fetch the next file's first spans while the
	// decoders finish one (bench/peers table: an epoch ~15 % shorter than
	// with four, the same peak memory); the segments read ahead of a
	// reader of small row groups need less than the other half. A
	// snapshot none of whose segments is read through spans gives it back
	// (segBudget).
	spans := newSpanCache(opts.CoalesceBytes, segBytes/2)
	if spans != nil {
		segBytes -= spans.budget()
	}
	return &Dataset{Name: name, loc: loc, opts: opts, log: opts.Logger.With("dataset", name), segs: newSegCache(segBytes),
		key: indexKey(), blocks: newBlockMemo(opts.BlockBytes, opts.Reserve), spans: spans}
}

// List returns the dataset's source objects, in order. It fails if the
// location does not exist or holds no supported file.
func (d *Dataset) List(ctx context.Context) ([]source.Info, error) {
	if !d.loc.Prefix {
		info, err := d.loc.Store.Stat(ctx, d.loc.Key)
		if err != nil {
			return nil, err
		}
		return []source.Info{info}, nil
	}
	all, err := d.loc.Store.List(ctx, d.loc.Key)
	if err != nil {
		return nil, err
	}
	var out []source.Info
	for _, info := range all {
		if format.Supported(info.Key) {
			out = append(out, info)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w (.parquet, .arrow, .arrows, .csv, .jsonl)", d.loc.StoreID, ErrNoSources)
	}
	return out, nil
}

// Load lists and indexes the sources and makes the result current.
func (d *Dataset) Load(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadLocked(ctx)
}

func (d *Dataset) loadLocked(ctx context.Context) error {
	infos, err := d.List(ctx)
	if err == nil {
		var s *Snapshot
		s, err = d.index(ctx, infos)
		if err == nil {
			d.gen++
			s.Gen = d.gen
			budget := s.segBudget()
			d.segs.setMax(budget)
			d.spans.enable(budget < d.opts.SegmentCacheBytes)
			d.cur.Store(s)
			d.loadErr.Store(nil)
			d.lastCheck = time.Now()
			return nil
		}
	}
	if ctx.Err() != nil {
		// The caller gave up (an interrupted open): that says nothing of
		// the sources. The state stays as it was, and the next check
		// looks again.
		d.lastCheck = time.Time{}
		return err
	}
	err = fmt.Errorf("dataset %s: %w", d.Name, err)
	d.loadErr.Store(&err)
	d.lastCheck = time.Now()
	return err
}

// Current returns the current snapshot, or the reason there is none.
func (d *Dataset) Current() (*Snapshot, error) {
	if s := d.cur.Load(); s != nil {
		if e := d.loadErr.Load(); e == nil {
			return s, nil
		}
	}
	if e := d.loadErr.Load(); e != nil {
		return nil, *e
	}
	return nil, fmt.Errorf("dataset %s: not loaded", d.Name)
}

// ListErr is why the latest check could not list the sources, while the
// current snapshot is still served; nil once a listing works again.
func (d *Dataset) ListErr() error {
	if e := d.listErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Err is the reason the last load failed, or nil.
func (d *Dataset) Err() error {
	if e := d.loadErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Check looks for changed sources (new, removed or rewritten files) at
// most once per CheckInterval, and re-indexes when it finds one. It
// returns the snapshot current afterwards.
func (d *Dataset) Check(ctx context.Context) (*Snapshot, error) {
	return d.check(ctx, false)
}

// Recheck is Check without the rate limit, for a caller that has just
// seen ErrChanged: until the sources are listed again, every open of the
// changed file would fail the same way.
func (d *Dataset) Recheck(ctx context.Context) (*Snapshot, error) {
	return d.check(ctx, true)
}

func (d *Dataset) check(ctx context.Context, force bool) (*Snapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !force && time.Since(d.lastCheck) < d.opts.CheckInterval {
		return d.Current()
	}
	cur := d.cur.Load()
	infos, err := d.List(ctx)
	d.lastCheck = time.Now()
	if err == nil && d.listErr.Swap(nil) != nil {
		d.log.Info("listing the sources works again")
	}
	if err == nil && cur != nil && d.Err() == nil && sameSources(cur.sources(), infos) {
		return cur, nil
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			d.lastCheck = time.Time{} // not looked: the next check does
			return nil, err
		}
		err = fmt.Errorf("dataset %s: listing the sources: %w", d.Name, err)
		if cur != nil && d.Err() == nil {
			// Nothing says the sources changed: the snapshot stays
			// current, so batches already cached are still served and the
			// others fail on their own reads (EIO with the store's reason)
			// until the store answers again.
			if d.listErr.Swap(&err) == nil {
				d.log.Error("listing the sources failed; serving the current snapshot", "err", err)
			}
			return cur, nil
		}
		// Listing again (in loadLocked) would only wait out the same
		// failure twice: on a dead endpoint that doubles the time an open
		// takes to fail.
		d.loadErr.Store(&err)
		d.log.Error("listing the sources failed", "err", err)
		return nil, err
	}
	d.log.Info("sources changed; re-indexing")
	if err := d.loadLocked(ctx); err != nil {
		d.log.Error("re-index failed", "err", err)
		return nil, err
	}
	return d.Current()
}

func sameSources(a, b []source.Info) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Identity() != b[i].Identity() {
			return false
		}
	}
	return true
}

// SegmentStats reports the decoded-segment cache's hits, misses and bytes.
func (d *Dataset) SegmentStats() (hits, misses uint64, bytes int64) { return d.segs.stats() }

// SpanStats reports coalesced reads (Options.CoalesceBytes): spans
// fetched, and span reads served by a span cached or in flight.
func (d *Dataset) SpanStats() (fetches, hits int64) { return d.spans.stats() }

// Snapshot is an immutable view of a dataset at one set of source
// identities: its files, schema, batches and their exact encoded sizes.
type Snapshot struct {
	ds        *Dataset
	Gen       uint64 // increases with every re-index of the dataset
	ID        string // content identity: sources, batch size, index version
	PermID    string // seeds the views' permutations (permID)
	Files     []*SourceFile
	schema    *arrow.Schema
	Rows      int64
	BatchSize int64
	sizes     []int64
	batchErrs map[int]error
	IndexedIn time.Duration
	FromCache bool // index loaded from the state dir
}

// SourceFile is one indexed source file.
type SourceFile struct {
	Info     source.Info
	FirstRow int64
	Index    *format.File
	reader   *format.Reader
	segStart []int64 // first row of each segment, within the file
	// schemaTag identifies the schema the file is decoded with: for a text
	// file it depends on the dataset's other files (unifyText), so a
	// segment decoded under one snapshot must not serve another.
	schemaTag string
}

func (s *Snapshot) sources() []source.Info {
	out := make([]source.Info, len(s.Files))
	for i, f := range s.Files {
		out[i] = f.Info
	}
	return out
}

// Schema is the dataset's Arrow schema.
func (s *Snapshot) Schema() *arrow.Schema { return s.schema }

// NumBatches is the number of batch files.
func (s *Snapshot) NumBatches() int {
	if s.Rows == 0 {
		return 0
	}
	return int((s.Rows + s.BatchSize - 1) / s.BatchSize)
}

// BatchRows returns the row range [lo, hi) of batch k.
func (s *Snapshot) BatchRows(k int) (lo, hi int64) {
	lo = int64(k) * s.BatchSize
	hi = min(lo+s.BatchSize, s.Rows)
	return lo, hi
}

// Size is the exact encoded size of batch k, or the reason it cannot be built.
func (s *Snapshot) Size(k int) (int64, error) {
	if k < 0 || k >= len(s.sizes) {
		return 0, fmt.Errorf("batch %d of %d: %w", k, len(s.sizes), source.ErrNotExist)
	}
	if err := s.batchErrs[k]; err != nil {
		return 0, err
	}
	return s.sizes[k], nil
}

// Key identifies batch k's bytes across snapshots and mounts: equal keys,
// equal bytes.
func (s *Snapshot) Key(k int) string { return fmt.Sprintf("%s/%d", s.ID, k) }

// Build encodes batch k as an Arrow IPC file. Like BuildInto, it takes
// batch k to be read in dataset order: it starts decoding the source
// segment after the batch's last one in the background (readAhead).
func (s *Snapshot) Build(ctx context.Context, k int) ([]byte, error) {
	defer s.spanAhead(k)()
	b, err := s.build(ctx, k)
	if err == nil {
		s.readAhead(k)
	}
	return b, err
}

func (s *Snapshot) build(ctx context.Context, k int) ([]byte, error) {
	n, err := s.Size(k)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if err := s.buildInto(ctx, k, b); err != nil {
		return nil, err
	}
	return b, nil
}

// KnownSize is Size for callers that only need to know whether the size
// is known without building (it always is for a snapshot's batches).
func (s *Snapshot) KnownSize(k int) (int64, bool) {
	n, err := s.Size(k)
	return n, err == nil
}

// BuildInto encodes batch k into dst, which must hold exactly its Size,
// and reads ahead like Build.
func (s *Snapshot) BuildInto(ctx context.Context, k int, dst []byte) error {
	defer s.spanAhead(k)()
	err := s.buildInto(ctx, k, dst)
	if err == nil {
		s.readAhead(k)
	}
	return err
}

func (s *Snapshot) buildInto(ctx context.Context, k int, dst []byte) error {
	n, err := s.Size(k)
	if err != nil {
		return err
	}
	if int64(len(dst)) != n {
		return fmt.Errorf("batch %d: a buffer of %d bytes for %d", k, len(dst), n)
	}
	w := &fixedWriter{b: dst}
	if err := s.encode(ctx, k, w); err != nil {
		if w.overflow {
			return fmt.Errorf("batch %d: built more than the %d bytes the index says: %w", k, n, ErrChanged)
		}
		return err
	}
	if int64(w.n) != n {
		return fmt.Errorf("batch %d: built %d bytes, index says %d: %w", k, w.n, n, ErrChanged)
	}
	if s.ds.opts.VerifyAfterBuild {
		if err := s.verify(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// fixedWriter writes into a buffer of fixed size.
type fixedWriter struct {
	b        []byte
	n        int
	overflow bool // a write did not fit
}

func (w *fixedWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.b)-w.n {
		w.overflow = true
		return 0, io.ErrShortBuffer
	}
	w.n += copy(w.b[w.n:], p)
	return len(p), nil
}

// verify re-stats the files batch k was cut from.
func (s *Snapshot) verify(ctx context.Context, k int) error {
	lo, hi := s.BatchRows(k)
	for _, f := range s.filesFor(lo, hi) {
		info, err := s.ds.loc.Store.Stat(ctx, f.Info.Key)
		if err != nil || info.Identity() != f.Info.Identity() {
			return fmt.Errorf("batch %d: %s: %w", k, f.Info.Key, ErrChanged)
		}
	}
	return nil
}

func (s *Snapshot) filesFor(lo, hi int64) []*SourceFile {
	i := sort.Search(len(s.Files), func(i int) bool { return s.Files[i].FirstRow+s.Files[i].Index.Rows > lo })
	var out []*SourceFile
	for ; i < len(s.Files) && s.Files[i].FirstRow < hi; i++ {
		if s.Files[i].Index.Rows > 0 {
			out = append(out, s.Files[i])
		}
	}
	return out
}

// Record assembles batch k's rows as one record batch.
func (s *Snapshot) Record(ctx context.Context, k int) (arrow.RecordBatch, error) {
	lo, hi := s.BatchRows(k)
	var parts []arrow.RecordBatch
	for _, f := range s.filesFor(lo, hi) {
		flo := max(lo-f.FirstRow, 0)
		fhi := min(hi-f.FirstRow, f.Index.Rows)
		si := sort.Search(len(f.segStart), func(i int) bool { return f.segStart[i]+f.Index.Segments[i].Rows > flo })
		for ; si < len(f.segStart) && f.segStart[si] < fhi; si++ {
			rec, err := s.segment(ctx, f, si, false, false)
			if err != nil {
				return nil, err
			}
			a := max(flo-f.segStart[si], 0)
			b := min(fhi-f.segStart[si], rec.NumRows())
			parts = append(parts, rec.NewSlice(a, b))
		}
	}
	rec, err := format.ConcatRecords(s.schema, parts)
	if err != nil {
		return nil, fmt.Errorf("batch %d: %w", k, err)
	}
	if rec.NumRows() != hi-lo {
		return nil, fmt.Errorf("batch %d: assembled %d rows, want %d: %w", k, rec.NumRows(), hi-lo, format.ErrCorrupt)
	}
	return rec, nil
}

// readAhead starts decoding, in the background, the source segments that
// follow the last one batch k uses (in the same file, then the next
// files'): Options.ReadAhead of them, skipping those decoded or being
// decoded, while the segment cache has room (startAhead). A reader going
// through the batches in order then finds them decoded when it gets there.
// Prefetch alone reads ahead a number of batches, which can be less than a
// segment (a Parquet row group) takes to decode, and its workers fetch one
// segment each at a time.
func (s *Snapshot) readAhead(k int) {
	f, si, cur, ok := s.lastSegment(k)
	if !ok {
		return
	}
	s.segmentsAfter(f, si, func(f *SourceFile, si int) bool { return s.startAhead(f, si, cur, true) })
}

// segmentsAfter calls next with the Options.ReadAhead segments after
// segment si of f, in dataset order (on into the next files), while it
// returns true.
func (s *Snapshot) segmentsAfter(f *SourceFile, si int, next func(f *SourceFile, si int) bool) {
	for range s.ds.opts.ReadAhead {
		si++
		for si >= len(f.segStart) {
			if f = s.nextFile(f); f == nil {
				return
			}
			si = 0
		}
		if !next(f, si) {
			return
		}
	}
}

// spanAhead is, for batch k about to be built from a segment not decoded
// yet (a reader starting, or going on after a jump), readAhead's span
// fetches without its decoding: the segments after k's have their spans
// (spans.go) fetched while k's own segment is read and decoded rather than
// after (readAhead needs k's segment decoded, to size the segments it
// decodes ahead). The returned func lets go of them; readAhead holds them
// by then.
func (s *Snapshot) spanAhead(k int) (release func()) {
	release = func() {}
	if s.ds.spans == nil {
		return release
	}
	f, si, cur, ok := s.lastSegment(k)
	if !ok {
		return release
	}
	if _, ok := s.ds.segs.cached(cur); ok {
		return release
	}
	var held []func()
	s.segmentsAfter(f, si, func(f *SourceFile, si int) bool {
		obj := s.object(context.Background(), f, false)
		if off, n, ok := s.spanned(obj, f, si); ok {
			held = append(held, s.ds.spans.prefetch(obj, obj.spanObj, off, n))
		}
		return true
	})
	return func() {
		for _, r := range held {
			r()
		}
	}
}

// readAheadBatches is readAhead for a reader whose next batches, after
// batch k, are next (a shuffled view's order, at most Options.ReadAhead of
// them): it starts decoding the segments their first rows are in.
func (s *Snapshot) readAheadBatches(k int, next []int) {
	_, _, cur, ok := s.lastSegment(k)
	if !ok {
		return
	}
	for _, b := range next {
		lo, _ := s.BatchRows(b)
		if f, si, ok := s.segmentAt(lo); ok && !s.startAhead(f, si, cur, false) {
			return
		}
	}
}

// lastSegment is the segment batch k's last row is in, and its key.
func (s *Snapshot) lastSegment(k int) (f *SourceFile, si int, key string, ok bool) {
	_, hi := s.BatchRows(k)
	if hi <= 0 {
		return nil, 0, "", false
	}
	if f, si, ok = s.segmentAt(hi - 1); !ok {
		return nil, 0, "", false
	}
	return f, si, s.segmentKey(f, si), true
}

// startAhead starts decoding segment si of f in the background unless it
// is decoded or being decoded, with cur in use (segCache.startAhead); it
// reports whether the cache has room to look further ahead. inOrder: the
// reader goes through the dataset in order (its reads may be coalesced).
func (s *Snapshot) startAhead(f *SourceFile, si int, cur string, inOrder bool) bool {
	key := s.segmentKey(f, si)
	start, room := s.ds.segs.startAhead(key, cur, s.ds.opts.ReadAhead+1)
	if !start {
		return room
	}
	run := s.ds.opts.Background
	if run == nil {
		run = func(f func()) { go f() }
	}
	release := func() {}
	if inOrder {
		// Its bytes' spans are in flight from now: a prefetch worker
		// reaching the segment before this read-ahead joins them.
		obj := s.object(context.Background(), f, false)
		if off, n, ok := s.spanned(obj, f, si); ok {
			release = s.ds.spans.prefetch(obj, obj.spanObj, off, n)
		}
	}
	run(func() {
		defer s.ds.segs.doneAhead(key)
		defer release()
		// An error here is the next reader's to see, when it decodes the
		// segment itself.
		_, _ = s.segment(context.Background(), f, si, true, inOrder)
	})
	return true
}

// segmentAt finds the file and segment that hold row (of the dataset).
func (s *Snapshot) segmentAt(row int64) (*SourceFile, int, bool) {
	files := s.filesFor(row, row+1)
	if len(files) == 0 {
		return nil, 0, false
	}
	f := files[0]
	r := row - f.FirstRow
	si := sort.Search(len(f.segStart), func(i int) bool { return f.segStart[i]+f.Index.Segments[i].Rows > r })
	if si >= len(f.segStart) {
		return nil, 0, false
	}
	return f, si, true
}

func (s *Snapshot) segmentKey(f *SourceFile, i int) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%d", s.ds.loc.StoreID, f.Info.Key, f.Info.Identity(), f.schemaTag, i)
}

// segment returns segment i of f, decoded; ahead: for a read-ahead, not
// a reader (segCache.get); inOrder: read ahead of a reader going through
// the dataset in order, which fetches coalesced spans (spans.go) where
// the segment is small (spanned).
func (s *Snapshot) segment(ctx context.Context, f *SourceFile, i int, ahead, inOrder bool) (arrow.RecordBatch, error) {
	key := s.segmentKey(f, i)
	return s.ds.segs.get(ctx, key, ahead, func(ctx context.Context) (arrow.RecordBatch, error) {
		obj := s.object(ctx, f, false)
		if inOrder {
			_, _, obj.spanFetch = s.spanned(obj, f, i)
			if obj.spanFetch {
				obj.next = func() (*object, int64) { return s.nextSpanned(f) }
			}
		}
		rec, err := f.reader.ReadSegment(ctx, obj, i)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Info.Key, obj.explain(err))
		}
		return rec, nil
	})
}

// segBudget is the segment cache's budget while s is current: all of
// Options.SegmentCacheBytes, less the span cache's share when some of s's
// segments may be read through spans: ones spanned, or of a Parquet file
// whose extents are not known yet (its footer was too large to keep in
// the index: it is parsed at the first decode). It looks at every segment
// of a dataset none of whose segments is spanned (~3 µs each).
func (s *Snapshot) segBudget() int64 {
	c := s.ds.spans
	if c == nil {
		return s.ds.opts.SegmentCacheBytes
	}
	for _, f := range s.Files {
		if f.Index.Kind != format.Parquet {
			continue
		}
		obj := s.object(context.Background(), f, false)
		for si := range f.Index.Segments {
			_, _, known := f.reader.SegmentExtent(obj, si)
			if _, _, ok := s.spanned(obj, f, si); ok || !known {
				return s.ds.opts.SegmentCacheBytes - c.budget()
			}
		}
	}
	return s.ds.opts.SegmentCacheBytes
}

// nextSpanned returns the object of the file after f in dataset order
// (the next one with rows), and where its first segment begins, when that
// segment is read through spans in order; nil otherwise.
func (s *Snapshot) nextSpanned(f *SourceFile) (*object, int64) {
	next := s.nextFile(f)
	if next == nil {
		return nil, 0
	}
	obj := s.object(context.Background(), next, false)
	off, _, ok := s.spanned(obj, next, 0)
	if !ok {
		return nil, 0
	}
	return obj, off
}

// nextFile is the file after f in dataset order that has rows, or nil.
func (s *Snapshot) nextFile(f *SourceFile) *SourceFile {
	next := s.filesFor(f.FirstRow+f.Index.Rows, f.FirstRow+f.Index.Rows+1)
	if len(next) == 0 || next[0] == f {
		return nil
	}
	return next[0]
}

// spanned returns the byte range of segment si of f when it is read
// through spans in order: it is small (spanCache.small), and so is the
// segment before it, whose bytes share its first span — after a large
// segment, read exactly, a span would fetch much of it again (a file's
// short last row group).
func (s *Snapshot) spanned(obj *object, f *SourceFile, si int) (off, n int64, ok bool) {
	c := s.ds.spans
	if c == nil {
		return 0, 0, false
	}
	if f.Index.Kind != format.Parquet {
		// Other formats read bytes outside a segment's extent with it (an
		// IPC stream's schema message), or read it otherwise.
		return 0, 0, false
	}
	off, n, ok = f.reader.SegmentExtent(obj, si)
	if !ok || n > c.small() {
		return 0, 0, false
	}
	if si > 0 {
		if _, pn, pok := f.reader.SegmentExtent(obj, si-1); !pok || pn > c.small() {
			return 0, 0, false
		}
	}
	return off, n, true
}

// object is f's source object, read with ctx; spanFetch: its reads fetch
// spans (see segment).
func (s *Snapshot) object(ctx context.Context, f *SourceFile, spanFetch bool) *object {
	obj := &object{ctx: ctx, store: s.ds.loc.Store, key: f.Info.Key, size: f.Info.Size, etag: f.Info.ETag,
		spans: s.ds.spans, spanFetch: spanFetch}
	if obj.spans != nil {
		obj.spanObj = fmt.Sprintf("%s\x00%s\x00%s", s.ds.loc.StoreID, f.Info.Key, f.Info.Identity())
		if last := len(f.Index.Segments) - 1; last >= 0 {
			if off, n, ok := f.reader.SegmentExtent(obj, last); ok {
				obj.dataEnd = off + n
			}
		}
	}
	return obj
}

// encode writes batch k as an Arrow IPC file to w.
func (s *Snapshot) encode(ctx context.Context, k int, w io.Writer) error {
	rec, err := s.Record(ctx, k)
	if err != nil {
		return err
	}
	return writeIPC(w, s.schema, rec)
}

func writeIPC(w io.Writer, schema *arrow.Schema, rec arrow.RecordBatch) error {
	fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return fmt.Errorf("ipc writer: %w", err)
	}
	if rec != nil {
		if err := fw.Write(rec); err != nil {
			return fmt.Errorf("ipc write: %w", err)
		}
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("ipc close: %w", err)
	}
	return nil
}

// SchemaFile is the schema alone, as an Arrow IPC file with no batches.
func (s *Snapshot) SchemaFile() []byte {
	var buf bytes.Buffer
	_ = writeIPC(&buf, s.schema, nil) // into memory: cannot fail
	return buf.Bytes()
}

func snapshotID(key string, loc Location, infos []source.Info, opts Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%d\n", key, loc.StoreID, opts.BatchSize)
	if opts.Format.Schema != nil {
		h.Write(format.EncodeSchema(opts.Format.Schema))
	}
	fmt.Fprintf(h, "seg=%d\n", opts.Format.SegmentRows)
	for _, in := range infos {
		fmt.Fprintf(h, "%s\x00%s\n", in.Key, in.Identity())
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// permID is what seeds a snapshot's view permutations: what travels with a
// copy of the data (keys below the dataset's root, sizes, batch size), not
// where it lies (the store) or its mtimes, so that a view's files are the
// same on every machine that holds the same data.
func permID(loc Location, infos []source.Info, opts Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "zenithfs-perm-1\n%d\nseg=%d\n", opts.BatchSize, opts.Format.SegmentRows)
	for _, in := range infos {
		key := path.Base(in.Key)
		if loc.Prefix {
			key = strings.TrimPrefix(strings.TrimPrefix(in.Key, loc.Key), "/")
		}
		fmt.Fprintf(h, "%q %d\n", key, in.Size)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Opts exposes the dataset's options for wiring before Load.
func (d *Dataset) Opts() *Options { return &d.opts }
