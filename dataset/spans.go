package dataset

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/source"
)

// Coalesced reads. On S3 every GET costs a round trip and a request's worth
// of work on both ends (signing, the server's per-request cost), so reading
// each segment (a Parquet row group: one GET of its column chunks) costs
// many more requests than its bytes need: a 16 384-row table row group is
// ~800 KB. A reader going through a dataset in order reads each file's
// segments one after another, so the segments read ahead of it
// (Snapshot.readAhead) are fetched through aligned spans of
// Options.CoalesceBytes of their object instead: one GET brings the bytes
// of several segments, and the segments after it find them in memory.
//
// When a segment is started ahead in order, the spans its bytes lie in are
// fetched at once, in the background, and hold a reference from it until
// its read-ahead ends: whoever reads the segment first (the read-ahead, or
// a prefetch worker that got there before it) joins them. A read through
// spans also fetches the spans after its last one while the cache has
// room, so the network stays ahead of the decoders. The cache holds a few
// spans (half of the segment cache's budget); a span goes when no
// read-ahead holds it and its reader is past it (or reads another object),
// least recently used first; one that readers ahead still need never goes,
// so the spans in memory are at most the cache's plus those the segments
// being read ahead hold (Options.ReadAhead segments per reader, and as
// many again while a reader's first batch is built: Snapshot.spanAhead),
// plus those evicted while a decoder still reads its column chunks from
// them (views, not copies: at most two spans per decode in flight).
//
// The spans fetched ahead of a reader go on into the next file: a reader
// reaching the end of one file's spans also fetches the first spans of the
// next, so the network does not wait for the decoders to get there (the
// segments read ahead, Options.ReadAhead of them, are less than a span's
// round trip ahead of the reader on a high-latency link: bench/peers'
// table stalled ~70 ms at each file's start).
//
// Only reads in dataset order go through spans: a shuffled view's reads
// ahead, and a reader's own read of a segment whose span is neither cached
// nor in flight, fetch exactly the segment's ranges (a span there would be
// fetched mostly for nothing). So does a read of more than half a span
// (small): it is already a large request.

// spanCache holds recently fetched spans, LRU.
type spanCache struct {
	size  int64 // bytes per span
	limit int   // max while the cache is in use (enable)

	mu    sync.Mutex
	max   int        // spans kept (cached and in flight) when none is held
	ll    *list.List // fetched spans, front = most recent
	items map[spanKey]*span
	// pos is, per object, the first span the latest read in order needed:
	// the spans before it that no read-ahead holds are behind its reader.
	pos map[string]int64
	// last is the object the latest read or read-ahead in order was of:
	// spans of other objects that nobody holds are behind their readers.
	last string
	// next is the object after nextOf in dataset order, whose first spans
	// a reader at span nextAt of nextOf, reaching its end, fetched: while
	// the latest read is still of nextOf, at or after nextAt, they are
	// ahead of it, not behind (ahead).
	next, nextOf string
	nextAt       int64

	fetches, hits atomic.Int64
}

type spanKey struct {
	obj string // the object's store, key and identity
	i   int64  // span index: bytes [i*size, (i+1)*size)
}

type span struct {
	key spanKey
	// start, end: the bytes of the object it holds, within its aligned
	// range: from the first byte a reader in order asked of it (bytes before
	// were read exactly already), to the end of the object's data (a
	// Parquet footer comes from the index).
	start, end int64
	done       chan struct{} // closed when data or err is set
	data       []byte        // bytes [start, end)
	err        error
	el         *list.Element // in ll once fetched without error
	refs       int           // segments read ahead that will read it (prefetch)
}

// newSpan returns span i of obj, in flight, holding bytes from from (or
// its beginning) up to the end of its range or to lim.
func (c *spanCache) newSpan(obj string, i, from, lim int64) *span {
	return &span{key: spanKey{obj, i}, start: max(i*c.size, from), end: min((i+1)*c.size, lim), done: make(chan struct{})}
}

// covers reports whether sp holds bytes [off, off+n).
func (sp *span) covers(off, n int64) bool { return sp.start <= off && off+n <= sp.end }

// newSpanCache returns a cache of spans of size bytes within budget bytes,
// or nil (reads are exact) when fewer than three spans of at least 256 KiB
// would fit.
func newSpanCache(size, budget int64) *spanCache {
	if size <= 0 {
		return nil
	}
	size = min(size, budget/3)
	if size < 256<<10 {
		return nil
	}
	n := int(budget / size)
	return &spanCache{size: size, limit: n, max: n, ll: list.New(), items: map[spanKey]*span{}, pos: map[string]int64{}}
}

// budget is the most bytes the cache keeps when in use.
func (c *spanCache) budget() int64 { return int64(c.limit) * c.size }

// enable puts the cache in use, or out of it (nil: nothing): out of use
// it keeps no span nobody holds, now or when the spans held or in flight
// are let go, and fetches none ahead. A dataset whose current snapshot
// reads nothing through spans gives their budget to the segment cache.
func (c *spanCache) enable(on bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = 0
	if on {
		c.max = c.limit
	}
	c.trim()
}

// prefetch is for a segment about to be read ahead in order, whose bytes
// are [off, off+n) of object o: it starts fetching, in the background,
// the spans they lie in that are neither cached nor in flight, and holds
// every one of those spans until release is called (when the read-ahead
// has ended). A range larger than small is left to be read exactly;
// release is then a no-op.
func (c *spanCache) prefetch(o *object, obj string, off, n int64) (release func()) {
	lim := o.spanLimit()
	if n <= 0 || n > c.small() || off < 0 || off+n > lim {
		return func() {}
	}
	var held, mine []*span
	c.mu.Lock()
	for i := off / c.size; i <= (off+n-1)/c.size; i++ {
		k := spanKey{obj, i}
		sp, ok := c.items[k]
		if !ok {
			sp = c.newSpan(obj, i, off, lim)
			c.items[k] = sp
			mine = append(mine, sp)
		}
		sp.refs++
		held = append(held, sp)
	}
	c.last = obj
	c.trim()
	c.mu.Unlock()
	c.background(o, mine)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, sp := range held {
			sp.refs--
		}
		c.trim()
	}
}

// small is the most bytes a read through spans asks for: a span replaces
// at least two such reads. A larger read is already a large request. (A
// quarter span, before spans went on into the next file and the span
// cache doubled: then 1 MiB row groups read in 4 MiB spans took 15 %
// longer an epoch than exact reads, bench/peers blobs; since, 30 % less:
// 37 GETs an epoch instead of 128, each ~3 ms of CPU on its two cores.)
func (c *spanCache) small() int64 { return c.size / 2 }

// background fetches spans, each by its own request, not waiting for them.
func (c *spanCache) background(o *object, spans []*span) {
	for _, sp := range spans {
		bg := &object{ctx: context.WithoutCancel(o.ctx), store: o.store, key: o.key, size: o.size, etag: o.etag, dataEnd: o.dataEnd}
		go c.fetch(bg, []*span{sp})
	}
}

// read fills bufs[i] with the bytes at offs[i] of object o (identified by
// obj) from spans (view, copying), reporting false, reading nothing, where
// view would.
func (c *spanCache) read(o *object, obj string, offs []int64, bufs [][]byte, fetch bool) (bool, error) {
	lens := make([]int64, len(bufs))
	for i, b := range bufs {
		lens[i] = int64(len(b))
	}
	_, ok, err := c.view(o, obj, offs, lens, fetch, bufs)
	return ok, err
}

// view returns the bytes [offs[i], offs[i]+lens[i]) of object o
// (identified by obj) from spans: views of a span's data (shared,
// read-only) where a range lies in one span, copies where it spans two;
// with dst, it copies every range into dst[i] instead (and returns dst).
// With fetch (a read in order), spans not yet cached are fetched
// (together, in one call to the store, which the read waits for), and so
// are the spans after them while there is room (in the background);
// without it, view succeeds only when every span the ranges need is cached
// or in flight (and is fetched). Otherwise, and for ranges of more than
// small bytes in all or outside the object, it reports false, reading
// nothing.
func (c *spanCache) view(o *object, obj string, offs, lens []int64, fetch bool, dst [][]byte) ([][]byte, bool, error) {
	var need []int64
	var total int64
	lim := o.spanLimit()
	from := int64(-1) // the first byte asked for
	for i, off := range offs {
		n := lens[i]
		if off < 0 || n < 0 || off+n > lim {
			return nil, false, nil
		}
		if n > 0 && (from < 0 || off < from) {
			from = off
		}
		total += n
		if n == 0 {
			continue
		}
		for i := off / c.size; i <= (off+n-1)/c.size; i++ {
			if len(need) == 0 || need[len(need)-1] != i {
				need = append(need, i)
			}
		}
	}
	if total > c.small() || len(need) == 0 {
		return nil, false, nil
	}
	// The next object in dataset order, when the spans fetched ahead may
	// reach this one's end (found before locking: it may read the next
	// file's footer), and where its segments begin.
	var nx *object
	var nxFrom int64
	nxAsked := fetch && o.next != nil && (need[len(need)-1]+1+int64(c.limit))*c.size >= lim
	if nxAsked {
		nx, nxFrom = o.next()
	}
	spans := make(map[int64]*span, len(need))
	var mine, ahead, aheadNext []*span
	c.mu.Lock()
	for _, i := range need {
		if spans[i] != nil {
			continue
		}
		k := spanKey{obj, i}
		sp, ok := c.items[k]
		if !ok && !fetch {
			c.mu.Unlock()
			return nil, false, nil
		}
		if !ok {
			sp = c.newSpan(obj, i, from, lim)
			c.items[k] = sp
			mine = append(mine, sp)
		} else if sp.el != nil {
			c.ll.MoveToFront(sp.el)
		}
		spans[i] = sp
	}
	for i, off := range offs {
		// A span began after bytes a reader had read exactly: one asked
		// again (out of order) is read exactly again.
		for end := off + lens[i]; off < end; {
			sp := spans[off/c.size]
			n := min(end, (off/c.size+1)*c.size) - off
			if !sp.covers(off, n) {
				for _, m := range mine { // seen by no one yet: the lock is held
					delete(c.items, m.key)
				}
				c.mu.Unlock()
				return nil, false, nil
			}
			off += n
		}
	}
	if fetch {
		if _, ok := c.pos[obj]; !ok && len(c.pos) >= 4*c.max {
			clear(c.pos) // positions only guide eviction
		}
		c.pos[obj] = need[0]
		c.last = obj
		c.trim()
		// Sequential read-ahead of spans, while there is room for them,
		// then into the next object.
		i := need[len(need)-1] + 1
		for ; i*c.size < lim; i++ {
			k := spanKey{obj, i}
			if _, ok := c.items[k]; ok {
				continue
			}
			if !c.makeRoom(obj, need[0]) {
				break
			}
			sp := c.newSpan(obj, i, 0, lim)
			c.items[k] = sp
			ahead = append(ahead, sp)
		}
		if i*c.size >= lim && nxAsked && nx == nil {
			c.next = "" // the end of the dataset, or of its spans
		}
		if i*c.size >= lim && nx != nil && nx.spanObj != obj && 0 <= nxFrom && nxFrom < nx.spanLimit() {
			nlim := nx.spanLimit()
			delete(c.pos, nx.spanObj) // from an earlier epoch: not behind
			c.next, c.nextOf, c.nextAt = nx.spanObj, obj, need[0]
			for j := nxFrom / c.size; j*c.size < nlim; j++ {
				k := spanKey{nx.spanObj, j}
				if _, ok := c.items[k]; ok {
					continue
				}
				if !c.makeRoom(obj, need[0]) {
					break
				}
				sp := c.newSpan(nx.spanObj, j, nxFrom, nlim)
				c.items[k] = sp
				aheadNext = append(aheadNext, sp)
			}
		}
	}
	c.mu.Unlock()
	c.background(o, ahead)
	if len(aheadNext) > 0 {
		c.background(nx, aheadNext)
	}
	if len(mine) > 0 {
		c.fetch(o, mine)
	}
	for _, sp := range spans {
		select {
		case <-sp.done:
		case <-o.ctx.Done():
			return nil, true, o.ctx.Err()
		}
		if sp.err != nil {
			// A span is an optimisation: the segment's own exact read
			// tries on its own (a reader may be waiting on this one).
			return nil, false, nil
		}
	}
	c.hits.Add(int64(len(spans) - len(mine)))
	out := dst
	if out == nil {
		out = make([][]byte, len(offs))
	}
	for i, off := range offs {
		n := lens[i]
		if n == 0 {
			if out[i] == nil {
				out[i] = []byte{}
			}
			continue
		}
		if sp := spans[off/c.size]; dst == nil && off+n <= sp.end {
			out[i] = sp.data[off-sp.start : off-sp.start+n : off-sp.start+n]
			continue
		}
		if out[i] == nil {
			out[i] = make([]byte, n)
		}
		for got := int64(0); got < n; {
			sp := spans[(off+got)/c.size]
			got += int64(copy(out[i][got:], sp.data[off+got-sp.start:]))
		}
	}
	return out, true, nil
}

// fetch reads spans (marked as being fetched by the caller) in one call to
// the store, then publishes them: cached when read whole, removed with the
// error otherwise. The fetch is not cancelled with the caller's context:
// other readers may be waiting for the same spans.
func (c *spanCache) fetch(o *object, spans []*span) {
	c.fetches.Add(int64(len(spans)))
	ranges := make([]source.Range, len(spans))
	for j, sp := range spans {
		ranges[j] = source.Range{Off: sp.start, Buf: make([]byte, max(sp.end-sp.start, 0))} // never negative: a fetch runs unguarded
	}
	ctx := context.WithoutCancel(o.readCtx())
	err := o.note(source.ReadRanges(ctx, o.store, o.key, ranges))
	c.mu.Lock()
	defer c.mu.Unlock()
	for j, sp := range spans {
		r := ranges[j]
		switch {
		case r.N == len(r.Buf):
			sp.data = r.Buf
		case err != nil && !errors.Is(err, io.EOF):
			sp.err = err
		default:
			sp.err = fmt.Errorf("read %s at %d: %w: got %d of %d bytes", o.key, r.Off, format.ErrCorrupt, r.N, len(r.Buf))
		}
		if sp.err != nil {
			delete(c.items, sp.key)
		} else {
			sp.el = c.ll.PushFront(sp)
		}
		close(sp.done)
	}
	c.trim()
}

// makeRoom evicts fetched spans until one more fits beside those cached
// and in flight, and reports whether it does. It evicts, least recently
// used first, spans no read-ahead holds that a reader of obj at span from
// is past: obj's before from, and other objects' (in dataset order, the
// files before obj's). A span fetched ahead and not yet read never goes.
func (c *spanCache) makeRoom(obj string, from int64) bool {
	c.evict(func(sp *span) bool {
		if sp.key.obj == obj {
			return sp.key.i < from
		}
		return !c.ahead(sp)
	}, 1)
	return len(c.items) < c.max
}

// ahead reports whether sp is of the object after the one being read,
// fetched ahead of its reader (read): not behind anyone yet.
func (c *spanCache) ahead(sp *span) bool {
	return c.next != "" && sp.key.obj == c.next && c.last == c.nextOf && c.pos[c.nextOf] >= c.nextAt
}

// trim evicts, while the cache holds more than max spans, those no
// read-ahead holds that are behind their object's latest read (pos), then
// those of objects other than the latest one read (a small object's only
// span is never behind its own position).
func (c *spanCache) trim() {
	if c.max == 0 {
		c.evict(func(*span) bool { return true }, 0)
		return
	}
	c.evict(func(sp *span) bool { return sp.key.i < c.pos[sp.key.obj] && !c.ahead(sp) }, 0)
	c.evict(func(sp *span) bool { return sp.key.obj != c.last && !c.ahead(sp) }, 0)
}

// evict removes fetched spans that no read-ahead holds and that behind
// reports, least recently used first, until room more would fit.
func (c *spanCache) evict(behind func(*span) bool, room int) {
	for e := c.ll.Back(); len(c.items)+room > c.max && e != nil; {
		prev := e.Prev()
		if sp := e.Value.(*span); sp.refs == 0 && behind(sp) {
			c.ll.Remove(e)
			delete(c.items, sp.key)
		}
		e = prev
	}
}

// stats reports spans fetched and span reads served by a span cached or
// in flight.
func (c *spanCache) stats() (fetches, hits int64) {
	if c == nil {
		return 0, 0
	}
	return c.fetches.Load(), c.hits.Load()
}
