package dataset

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/source"
	"golang.org/x/sync/errgroup"
)

// View is an ordered sequence of files derived from a snapshot by a
// ViewSpec: one epoch of the dataset, natural or shuffled, or one rank's
// share of it, as Arrow IPC or npz files. It implements prefetch.View.
//
// The epoch sequence has as many files as the snapshot has batches.
// shuffle=batch puts natural batches in a permuted order; shuffle=block:K
// cuts the natural order into blocks of K batches, permutes the blocks,
// and shuffles the rows within each block, then cuts each block back into
// files of the batch size. rank=R,world=W keeps the files j of the epoch
// sequence with j%W == R and j < floor(n/W)*W: every rank gets floor(n/W)
// files, and the last n%W files of the sequence are dropped for this
// epoch (a different set each epoch when shuffled).
//
// All permutations are functions of (snapshot ID, seed, epoch) only, so
// the same path serves the same bytes on every mount and machine.
type View struct {
	snap  *Snapshot
	spec  ViewSpec
	n     int // files in this view
	total int // files in the epoch sequence
	// shuffle=batch: the natural batch at each epoch position.
	order []int32
	// shuffle=block:K: the block at each block position, and the first
	// epoch position of each block position (len = blocks+1).
	blockOrder []int32
	blockStart []int

	mu    sync.Mutex
	sizes []int64 // exact sizes once known; -1 while unknown
}

// View returns the view of s described by spec. It fails (wrapping
// ErrBadView) when the spec cannot apply to this snapshot, e.g. a world
// larger than the number of batches.
func (s *Snapshot) View(spec ViewSpec) (*View, error) {
	total := s.NumBatches()
	v := &View{snap: s, spec: spec, total: total, n: total}
	if spec.World > 0 {
		if spec.World > total {
			return nil, fmt.Errorf("%w %q: world %d is larger than the %d batches of the dataset", ErrBadView, spec, spec.World, total)
		}
		v.n = total / spec.World
	}
	switch spec.Shuffle {
	case ShuffleBatch:
		v.order = permutation(newRNG(s.PermID, spec.Seed, spec.Epoch, "batches"), total)
	case ShuffleBlock:
		nb := (total + spec.Block - 1) / spec.Block
		v.blockOrder = permutation(newRNG(s.PermID, spec.Seed, spec.Epoch, fmt.Sprintf("blocks/%d", spec.Block)), nb)
		v.blockStart = make([]int, nb+1)
		for p, b := range v.blockOrder {
			v.blockStart[p+1] = v.blockStart[p] + min(spec.Block, total-int(b)*spec.Block)
		}
		if err := v.blocksFit(); err != nil {
			return nil, err
		}
	}
	v.sizes = make([]int64, v.n)
	for i := range v.sizes {
		v.sizes[i] = -1
	}
	return v, nil
}

// Spec is the view's spec.
func (v *View) Spec() ViewSpec { return v.spec }

// Snapshot is the snapshot the view is cut from.
func (v *View) Snapshot() *Snapshot { return v.snap }

// NumBatches is the number of files in the view.
func (v *View) NumBatches() int { return v.n }

// Ext is the extension of the view's files: ".arrow" or ".npz".
func (v *View) Ext() string { return v.spec.Ext() }

// Position is the epoch position of the view's file k (k itself unless
// the view is one rank's share).
func (v *View) Position(k int) int {
	if v.spec.World > 0 {
		return k*v.spec.World + v.spec.Rank
	}
	return k
}

// Natural returns the natural batch whose rows file k holds, for views
// that do not shuffle rows; ok is false for block-shuffled views.
func (v *View) Natural(k int) (batch int, ok bool) {
	pos := v.Position(k)
	switch v.spec.Shuffle {
	case ShuffleBlock:
		return 0, false
	case ShuffleBatch:
		return int(v.order[pos]), true
	}
	return pos, true
}

// Key identifies file k's bytes. A view whose files are natural batches
// as Arrow IPC uses the natural batch's key, so the cache holds one copy
// for the dataset and every batch-shuffled view of it.
func (v *View) Key(k int) string {
	if nat, ok := v.Natural(k); ok {
		if v.spec.Format == FormatNPZ {
			return fmt.Sprintf("%s/%d.npz", v.snap.ID, nat)
		}
		return v.snap.Key(nat)
	}
	return fmt.Sprintf("%s/block:%d,seed=%d,epoch=%d/%d%s", v.snap.ID, v.spec.Block, v.spec.Seed, v.spec.Epoch, v.Position(k), v.Ext())
}

// KnownSize returns file k's exact size when it is known without building:
// always for natural batches as Arrow IPC, otherwise once built.
func (v *View) KnownSize(k int) (int64, bool) {
	if k < 0 || k >= v.n {
		return 0, false
	}
	if nat, ok := v.Natural(k); ok && v.spec.Format == FormatArrow {
		n, err := v.snap.Size(nat)
		return n, err == nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sizes[k], v.sizes[k] >= 0
}

// SizesFree reports whether every file's size is known without building.
func (v *View) SizesFree() bool {
	return v.spec.Format == FormatArrow && v.spec.Shuffle != ShuffleBlock
}

// Size is file k's exact size, building the file if it is not yet known.
// Callers that cache bytes should rather fetch them through their cache
// when KnownSize says no, since Build records the size as it goes.
func (v *View) Size(ctx context.Context, k int) (int64, error) {
	if n, ok := v.KnownSize(k); ok {
		return n, nil
	}
	b, err := v.Build(ctx, k)
	if err != nil {
		return 0, err
	}
	return int64(len(b)), nil
}

// NoteSize records file k's size as n, learned from its bytes found
// elsewhere (a cache shared with another view of the same files: the
// natural npz files of every seed and epoch have the same key), so that
// its size is not learned again by building it.
func (v *View) NoteSize(k int, n int64) {
	if k < 0 || k >= v.n {
		return
	}
	v.mu.Lock()
	v.sizes[k] = n
	v.mu.Unlock()
}

// Build produces file k's bytes.
func (v *View) Build(ctx context.Context, k int) ([]byte, error) {
	if k < 0 || k >= v.n {
		return nil, fmt.Errorf("view %s: file %d of %d: %w", v.spec, k, v.n, source.ErrNotExist)
	}
	defer v.spanAhead(k)()
	b, err := v.build(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("view %s file %d: %w", v.spec, k, err)
	}
	v.mu.Lock()
	v.sizes[k] = int64(len(b))
	v.mu.Unlock()
	noteBuilt(ctx)
	if nat, ok := v.Natural(k); ok {
		v.readAhead(k, nat)
	}
	return b, nil
}

// BuildInto builds file k into dst, which must hold exactly the size
// KnownSize gave. Natural batches as Arrow IPC are encoded in place; any
// other file (npz, block-shuffled, sized by an earlier build) is built and
// copied.
func (v *View) BuildInto(ctx context.Context, k int, dst []byte) error {
	nat, ok := v.Natural(k)
	if k < 0 || k >= v.n || !ok || v.spec.Format != FormatArrow {
		b, err := v.Build(ctx, k)
		if err != nil {
			return err
		}
		if len(b) != len(dst) {
			return fmt.Errorf("view %s file %d: built %d bytes, %d expected: %w", v.spec, k, len(b), len(dst), ErrChanged)
		}
		copy(dst, b)
		return nil
	}
	defer v.spanAhead(k)()
	if err := v.snap.buildInto(ctx, nat, dst); err != nil {
		return fmt.Errorf("view %s file %d: %w", v.spec, k, err)
	}
	noteBuilt(ctx)
	v.readAhead(k, nat)
	return nil
}

// spanAhead is Snapshot.spanAhead for file k of a view in natural order
// (a rank's share, npz files): its first file's segments after it have
// their spans fetched while it is built. A shuffled view reads exactly.
func (v *View) spanAhead(k int) (release func()) {
	if nat, ok := v.Natural(k); ok && v.spec.Shuffle == ShuffleNone {
		return v.snap.spanAhead(nat)
	}
	return func() {}
}

// readAhead starts decoding the source segments of the view's next files,
// taking them to be read in the view's order: for a view in natural order
// (a rank's share, npz files) the segments after file k's
// (Snapshot.readAhead), for a shuffled one those of its next files
// (Snapshot.readAheadBatches).
func (v *View) readAhead(k, nat int) {
	if v.spec.Shuffle == ShuffleNone {
		v.snap.readAhead(nat)
		return
	}
	var next []int
	for i := k + 1; i < v.n && len(next) < v.snap.ds.opts.ReadAhead; i++ {
		b, _ := v.Natural(i) // a batch shuffle: every file is a natural batch
		next = append(next, b)
	}
	v.snap.readAheadBatches(nat, next)
}

func (v *View) build(ctx context.Context, k int) ([]byte, error) {
	nat, ok := v.Natural(k)
	if ok && v.spec.Format == FormatArrow {
		return v.snap.build(ctx, nat)
	}
	var rec arrow.RecordBatch
	if ok {
		if _, err := v.snap.Size(nat); err != nil {
			return nil, err
		}
		r, err := v.snap.Record(ctx, nat)
		if err != nil {
			return nil, err
		}
		if err := v.verify(ctx, nat, nat+1); err != nil {
			return nil, err
		}
		rec = r
	} else {
		r, err := v.blockFile(ctx, v.Position(k))
		if err != nil {
			return nil, err
		}
		rec = r
	}
	if v.spec.Format == FormatNPZ {
		return EncodeNPZ(ctx, rec)
	}
	var buf bytes.Buffer
	if err := writeIPC(&buf, v.snap.schema, rec); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type buildNoticeKey struct{}

// WithBuildNotice returns a context under which View.Build calls f after
// building a file: a caller of a read-through cache learns that its read
// was built on demand rather than served ready.
func WithBuildNotice(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, buildNoticeKey{}, f)
}

func noteBuilt(ctx context.Context) {
	if f, ok := ctx.Value(buildNoticeKey{}).(func()); ok {
		f()
	}
}

// verify re-stats the sources of natural batches [lo, hi) when the
// dataset asks for it, so a source rewritten mid-build is never served.
func (v *View) verify(ctx context.Context, lo, hi int) error {
	if !v.snap.ds.opts.VerifyAfterBuild {
		return nil
	}
	for k := lo; k < hi; k++ {
		if err := v.snap.verify(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// blockFile returns the record of epoch position pos of a block-shuffled
// view, building (once for every view of the dataset) the whole block it
// belongs to.
func (v *View) blockFile(ctx context.Context, pos int) (arrow.RecordBatch, error) {
	p := sort.Search(len(v.blockOrder), func(p int) bool { return v.blockStart[p+1] > pos })
	b := int(v.blockOrder[p])
	key := fmt.Sprintf("%s/block:%d,seed=%d,epoch=%d/%d", v.snap.ID, v.spec.Block, v.spec.Seed, v.spec.Epoch, b)
	estimate := func() int64 { return v.blockEstimate(b) }
	return v.snap.ds.blocks.file(ctx, key, pos-v.blockStart[p], estimate, func(ctx context.Context) ([]arrow.RecordBatch, error) {
		return v.buildBlock(ctx, b)
	})
}

// blockEstimate is block b's decoded size, estimated as the size of its
// batches as Arrow IPC files (their buffers, padded, and a few hundred
// bytes of metadata). Batches that failed to index count nothing.
func (v *View) blockEstimate(b int) int64 {
	K := v.spec.Block
	var n int64
	for k := b * K; k < min((b+1)*K, v.total); k++ {
		if sz, err := v.snap.Size(k); err == nil {
			n += sz
		}
	}
	return n
}

// blocksFit refuses a block shuffle whose working set, one block being
// read and the next one being built (twice its size while it is cut),
// does not fit in the memory the dataset allows for built blocks.
func (v *View) blocksFit() error {
	var most, batch, block int64 // the largest block and batch; the block summed so far
	for k := range v.total {
		if k%v.spec.Block == 0 {
			block = 0
		}
		if sz, err := v.snap.Size(k); err == nil {
			batch = max(batch, sz)
			block += sz
			most = max(most, block)
		}
	}
	room := v.snap.ds.blocks.max
	if 3*most <= room {
		return nil
	}
	hint := "no block shuffle fits: use shuffle=batch, or a larger --cache-size"
	if k := room / 3 / max(batch, 1); k >= 1 {
		hint = fmt.Sprintf("use shuffle=block:%d or less, or a larger --cache-size", k)
	}
	return fmt.Errorf("%w %q: a block of %d batches holds about %s decoded, and a block shuffle needs room for three (one read, the next built and cut) within the %s allowed for blocks; %s",
		ErrBadView, v.spec, v.spec.Block, mib(most), mib(room), hint)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// buildBlock reads natural batches [bK, bK+K) and returns them as files:
// their rows in a permuted order, cut at the batch size.
func (v *View) buildBlock(ctx context.Context, b int) ([]arrow.RecordBatch, error) {
	K := v.spec.Block
	lo, hi := b*K, min((b+1)*K, v.total)
	// The block's batches are decoded in parallel: the first file of a
	// block waits for all of them.
	parts := make([]arrow.RecordBatch, hi-lo)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for k := lo; k < hi; k++ {
		g.Go(func() error {
			if _, err := v.snap.Size(k); err != nil {
				return err
			}
			rec, err := v.snap.Record(gctx, k)
			parts[k-lo] = rec
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := v.verify(ctx, lo, hi); err != nil {
		return nil, err
	}
	block, err := format.ConcatRecords(v.snap.schema, parts)
	if err != nil {
		return nil, fmt.Errorf("block %d: %w", b, err)
	}
	m := int(block.NumRows())
	perm := v.rowPerm(b, m)
	B := int(v.snap.BatchSize)
	out := make([]arrow.RecordBatch, 0, hi-lo)
	for i := 0; i < m; i += B {
		ib := array.NewInt32Builder(memory.DefaultAllocator)
		ib.AppendValues(perm[i:min(i+B, m)], nil)
		idx := ib.NewInt32Array()
		ib.Release()
		res, err := compute.Take(ctx, *compute.DefaultTakeOptions(), compute.NewDatum(block), compute.NewDatum(idx))
		idx.Release()
		if err != nil {
			return nil, fmt.Errorf("block %d: take rows: %w", b, err)
		}
		rd, ok := res.(*compute.RecordDatum)
		if !ok {
			return nil, fmt.Errorf("block %d: take returned %T", b, res)
		}
		out = append(out, rd.Value)
	}
	if len(out) != hi-lo {
		return nil, fmt.Errorf("block %d: cut %d files from %d rows, want %d", b, len(out), m, hi-lo)
	}
	return out, nil
}

// rowPerm is the order of the m rows of block b in a block-shuffled view.
func (v *View) rowPerm(b, m int) []int32 {
	return permutation(newRNG(v.snap.PermID, v.spec.Seed, v.spec.Epoch, fmt.Sprintf("rows/%d/%d", v.spec.Block, b)), m)
}

// RowIndices returns the natural row numbers that file k holds, in the
// file's order, without reading any data.
func (v *View) RowIndices(k int) []int64 {
	if nat, ok := v.Natural(k); ok {
		lo, hi := v.snap.BatchRows(nat)
		out := make([]int64, 0, hi-lo)
		for r := lo; r < hi; r++ {
			out = append(out, r)
		}
		return out
	}
	pos := v.Position(k)
	p := sort.Search(len(v.blockOrder), func(p int) bool { return v.blockStart[p+1] > pos })
	b := int(v.blockOrder[p])
	first, _ := v.snap.BatchRows(b * v.spec.Block)
	_, last := v.snap.BatchRows(min((b+1)*v.spec.Block, v.total) - 1)
	perm := v.rowPerm(b, int(last-first))
	B := int(v.snap.BatchSize)
	i := (pos - v.blockStart[p]) * B
	out := make([]int64, 0, B)
	for _, r := range perm[i:min(i+B, len(perm))] {
		out = append(out, first+int64(r))
	}
	return out
}
