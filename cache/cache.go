// Package cache is the byte-budgeted in-memory cache of batch bytes, on
// ristretto v2 with cost = bytes. Keys carry the identity of the sources a
// value was built from (see dataset.Snapshot.Key), so a changed source can
// never be served from cache: its batches simply have new keys, and the
// old entries age out under the budget. The package knows nothing of
// sources, datasets or FUSE.
package cache

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/zenithfs/zenithfs/blob"
)

// Cache maps keys to immutable batch files (in memory, or memfds) within a
// byte budget. It is safe for concurrent use.
type Cache struct {
	rc       *ristretto.Cache[string, *blob.Blob]
	budget   int64
	resMu    sync.Mutex   // orders AddReserved's updates of the limit
	reserved atomic.Int64 // lent to memory held elsewhere (AddReserved)

	hits, misses, puts, rejected, evictions atomic.Uint64
	evictedBytes                            atomic.Uint64
}

// New returns a cache holding at most budget bytes of values.
func New(budget int64) (*Cache, error) {
	if budget <= 0 {
		return nil, fmt.Errorf("cache budget %d: must be positive", budget)
	}
	c := &Cache{budget: budget}
	// ristretto wants ~10 counters per item it may hold; batch files are
	// tens of KiB to MiBs, so 4 KiB per item is a generous lower bound.
	counters := max(budget/4096*10, 10_000)
	rc, err := ristretto.NewCache(&ristretto.Config[string, *blob.Blob]{
		NumCounters:        counters,
		MaxCost:            budget,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict: func(it *ristretto.Item[*blob.Blob]) {
			c.evictions.Add(1)
			c.evictedBytes.Add(uint64(it.Cost))
		},
		OnReject: func(it *ristretto.Item[*blob.Blob]) { c.rejected.Add(1) },
	})
	if err != nil {
		return nil, fmt.Errorf("ristretto: %w", err)
	}
	c.rc = rc
	return c, nil
}

// Get returns the value for key.
func (c *Cache) Get(key string) (*blob.Blob, bool) {
	b, ok := c.rc.Get(key)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return b, ok
}

// Has reports whether key is cached, without counting a hit or a miss.
func (c *Cache) Has(key string) bool {
	_, ok := c.rc.Get(key)
	return ok
}

// Put stores b under key (cost b.Len()). A value larger than the budget is
// not kept. The admission policy may decline a value; Put reports whether
// it was accepted into the buffer. Put waits until the value is visible to
// Get, so a read right after a Put hits.
func (c *Cache) Put(key string, b *blob.Blob) bool {
	if b.Len() > c.rc.MaxCost() {
		return false
	}
	c.puts.Add(1)
	ok := c.rc.Set(key, b, max(b.Len(), 1))
	c.rc.Wait()
	return ok
}

// Budget is the configured byte budget.
func (c *Cache) Budget() int64 { return c.budget }

// AddReserved lends delta more bytes of the budget (fewer when negative)
// to memory held elsewhere (the built blocks of block-shuffled views):
// the cache holds at most budget − the sum lent from now on, and at least
// an eighth of its budget. Values past the new limit are evicted by the
// next Put. Safe for concurrent use: the lenders' changes add up.
func (c *Cache) AddReserved(delta int64) {
	c.resMu.Lock()
	defer c.resMu.Unlock()
	n := max(c.reserved.Add(delta), 0)
	c.rc.UpdateMaxCost(max(c.budget-n, c.budget/8, 1))
}

// Stats are counters since New.
type Stats struct {
	Hits         uint64 `json:"hits"`
	Misses       uint64 `json:"misses"`
	Puts         uint64 `json:"puts"`
	Rejected     uint64 `json:"rejected"`
	Evictions    uint64 `json:"evictions"`
	EvictedBytes uint64 `json:"evicted_bytes"`
	Bytes        int64  `json:"bytes"`
	Budget       int64  `json:"budget"`
	Reserved     int64  `json:"reserved"` // lent to built blocks (AddReserved)
}

// Stats returns the counters and the bytes held now.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Puts: c.puts.Load(), Rejected: c.rejected.Load(),
		Evictions: c.evictions.Load(), EvictedBytes: c.evictedBytes.Load(),
		Bytes: c.rc.MaxCost() - c.rc.RemainingCost(), Budget: c.budget, Reserved: c.reserved.Load(),
	}
}

// Close releases the cache's goroutines.
func (c *Cache) Close() { c.rc.Close() }
