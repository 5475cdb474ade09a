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

	hits, misses uint64
}

type segEntry struct {
	key  string
	rec  arrow.RecordBatch
	size int64
}

func newSegCache(max int64) *segCache {
	return &segCache{max: max, ll: list.New(), items: map[string]*list.Element{}, ahead: map[string]bool{}}
}

// startAhead reports whether key should be read ahead now, after cur
// (the segment in use): it is neither cached nor already being read ahead
// (then it is marked so until doneAhead), and the cache can hold it beside
// cur (taken to be as big), so that reading ahead never evicts the segment
// readers are still cutting batches from. At most two segments are read
// ahead at once.
func (c *segCache) startAhead(key, cur string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[cur]
	if !ok || 2*e.Value.(*segEntry).size > c.max {
		return false
	}
	if _, ok := c.items[key]; ok || c.ahead[key] || len(c.ahead) >= 2 {
		return false
	}
	c.ahead[key] = true
	return true
}

func (c *segCache) doneAhead(key string) {
	c.mu.Lock()
	delete(c.ahead, key)
	c.mu.Unlock()
}

func (c *segCache) get(ctx context.Context, key string, load func(context.Context) (arrow.RecordBatch, error)) (arrow.RecordBatch, error) {
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		c.hits++
		rec := e.Value.(*segEntry).rec
		c.mu.Unlock()
		return rec, nil
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
	return v.(arrow.RecordBatch), nil
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
	c.items[key] = c.ll.PushFront(&segEntry{key: key, rec: rec, size: size})
	c.bytes += size
	for c.bytes > c.max && c.ll.Len() > 1 {
		e := c.ll.Back()
		se := e.Value.(*segEntry)
		c.ll.Remove(e)
		delete(c.items, se.key)
		c.bytes -= se.size
	}
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
