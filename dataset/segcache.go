package dataset

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/zenithfs/zenithfs/format"
	"golang.org/x/sync/singleflight"
)

// segCache keeps recently decoded segments (Parquet row groups, IPC record
// batches, text blocks) so that consecutive batches cut from one segment
// decode it once. It is a byte-bounded LRU; concurrent requests for one
// segment decode it once (singleflight). Its budget is part of the daemon's
// memory budget, taken from the cache size by the caller; the one
// exception is a single segment bigger than that budget, kept alone (see
// put).
type segCache struct {
	max   int64
	mu    sync.Mutex
	bytes int64
	ll    *list.List // front = most recent
	items map[string]*list.Element
	sf    singleflight.Group
	ahead map[string]bool // keys being read ahead
	// aheadBytes is the size of the segments read ahead and not yet used
	// by a reader.
	aheadBytes int64

	hits, misses uint64
}

type segEntry struct {
	key   string
	rec   arrow.RecordBatch
	size  int64
	ahead bool // read ahead, not yet used by a reader (in aheadBytes)
}

func newSegCache(max int64) *segCache {
	return &segCache{max: max, ll: list.New(), items: map[string]*list.Element{}, ahead: map[string]bool{}}
}

// startAhead decides whether key should be read ahead now, after cur (the
// segment in use), with at most limit segments read ahead at once. start:
// key is neither cached nor already being read ahead, and there is room
// (then it is marked so until doneAhead). room: the cache can hold one
// more segment read ahead beside cur, those being read ahead (each taken
// to be as big as cur) and those read ahead but not yet used, so that
// reading ahead never evicts the segment readers are still cutting
// batches from, nor one read ahead before it is used; without room, the
// caller stops looking further ahead.
func (c *segCache) startAhead(key, cur string, limit int) (start, room bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[cur]
	if !ok || int64(len(c.ahead)+2)*e.Value.(*segEntry).size+c.aheadBytes > c.max || len(c.ahead) >= limit {
		return false, false
	}
	if _, ok := c.items[key]; ok || c.ahead[key] {
		return false, true
	}
	c.ahead[key] = true
	return true, true
}

func (c *segCache) doneAhead(key string) {
	c.mu.Lock()
	delete(c.ahead, key)
	c.mu.Unlock()
}

// get returns the segment under key, decoding it with load on a miss
// (once, however many ask at once). ahead: the caller reads it ahead of
// readers; otherwise a reader uses it now.
func (c *segCache) get(ctx context.Context, key string, ahead bool, load func(context.Context) (arrow.RecordBatch, error)) (arrow.RecordBatch, error) {
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		c.hits++
		se := e.Value.(*segEntry)
		if !ahead {
			c.use(se)
		}
		c.mu.Unlock()
		return se.rec, nil
	}
	c.mu.Unlock()
	v, err, _ := c.sf.Do(key, func() (any, error) {
		if rec, ok := c.cached(key); ok { // decoded (read ahead) since the miss
			return rec, nil
		}
		c.mu.Lock()
		c.misses++ // a decode, however many waited on it
		c.mu.Unlock()
		// A segment is decoded on behalf of every waiter: do not let one
		// waiter's cancellation fail the others.
		rec, err := loadRecovering(context.WithoutCancel(ctx), load)
		if err != nil {
			return nil, err
		}
		c.put(key, rec)
		return rec, nil
	})
	if err != nil {
		return nil, err
	}
	if !ahead {
		c.mu.Lock()
		if e, ok := c.items[key]; ok {
			c.use(e.Value.(*segEntry))
		}
		c.mu.Unlock()
	}
	return v.(arrow.RecordBatch), nil
}

// use notes that a reader used se; c.mu is held.
func (c *segCache) use(se *segEntry) {
	if se.ahead {
		se.ahead = false
		c.aheadBytes -= se.size
	}
}

// put keeps rec under key, evicting the least recently used segments past
// the budget. A segment bigger than the whole budget is kept alone: the
// batches cut from it one after another would otherwise decode it once
// each, and decoding it holds that memory anyway (while the next one
// decodes, two such segments are in memory).
func (c *segCache) put(key string, rec arrow.RecordBatch) {
	size := recordBytes(rec)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; ok {
		return
	}
	ahead := c.ahead[key]
	c.items[key] = c.ll.PushFront(&segEntry{key: key, rec: rec, size: size, ahead: ahead})
	c.bytes += size
	if ahead {
		c.aheadBytes += size
	}
	for c.bytes > c.max && c.ll.Len() > 1 {
		e := c.ll.Back()
		se := e.Value.(*segEntry)
		c.ll.Remove(e)
		delete(c.items, se.key)
		c.bytes -= se.size
		c.use(se)
	}
}

// setMax changes the cache's budget; a smaller one is enforced as
// segments are added.
func (c *segCache) setMax(max int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max
}

func (c *segCache) stats() (hits, misses uint64, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.bytes
}

// recordBytes is the memory held by a record's buffers.
func recordBytes(rec arrow.RecordBatch) int64 {
	var n int64
	for _, col := range rec.Columns() {
		n += dataBytes(col.Data())
	}
	return n
}

func dataBytes(d arrow.ArrayData) int64 {
	var n int64
	for _, b := range d.Buffers() {
		if b != nil {
			n += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		n += dataBytes(c)
	}
	return n
}

func (c *segCache) cached(key string) (arrow.RecordBatch, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		return e.Value.(*segEntry).rec, true
	}
	return nil, false
}

// loadRecovering runs load, turning a panic (a decoder on malformed input)
// into an error: a segment may be decoded on a read-ahead goroutine that
// nothing else guards, and every waiter on it would panic too.
func loadRecovering(ctx context.Context, load func(context.Context) (arrow.RecordBatch, error)) (rec arrow.RecordBatch, err error) {
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("%w: panic while decoding: %v", format.ErrCorrupt, p)
		}
	}()
	return load(ctx)
}
