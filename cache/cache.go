// Package cache is the byte-budgeted in-memory cache of batch bytes, on
// ristretto v2 with cost = bytes. Keys carry the identity of the sources a
// value was built from (see dataset.Snapshot.Key), so a changed source can
// never be served from cache: its batches simply have new keys, and the
// old entries age out under the budget. The package knows nothing of
// sources, datasets or FUSE.
//
// The cache resists scans. A reader going in order through more batches
// than the cache holds never reads an entry again before it is evicted:
// every byte the cache keeps is memory the decoders building the next
// batches could use (bench/peers: a 1.25 GB S3 epoch through a 512 MiB
// budget took 1.4× as long with the cache full of batches never read
// again, the Go heap squeezed under them). So the cache watches its
// evictions: when a window of them (scanWindow) passes with almost no
// entry read again (a Get at least reuseDistance puts after its Put:
// re-opening the file just read is not a re-read), it shrinks to an
// eighth of its budget, and it grows back as soon as a window sees
// entries read again. A dataset that fits evicts nothing and keeps it
// all; OnResize tells the owner of the memory (the memfd maker) the new
// size.
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
	rc       *ristretto.Cache[string, *entry]
	budget   int64
	resMu    sync.Mutex   // orders the updates of the limit (AddReserved, scans)
	reserved atomic.Int64 // lent to memory held elsewhere (AddReserved)
	scan     atomic.Bool  // shrunk: evictions showed nothing read again
	max      atomic.Int64 // the limit now
	onResize func(max int64, scan bool)

	hits, misses, puts, rejected, evictions atomic.Uint64
	evictedBytes, reused, scans             atomic.Uint64
	windowEvictions, windowReused           atomic.Uint64
}

// entry is a cached value and the put it came with.
type entry struct {
	b   *blob.Blob
	put uint64 // Cache.puts after its Put
}

const (
	// scanWindow is how many evictions the cache weighs at once.
	scanWindow = 32
	// A window with at most scanMaxReused re-reads is a scan; one with
	// at least unscanMinReused ends it.
	scanMaxReused, unscanMinReused = 1, 4
	// reuseDistance: a hit counts as a re-read when at least this many
	// other values were put since the entry's own Put.
	reuseDistance = 2
)

// New returns a cache holding at most budget bytes of values.
func New(budget int64) (*Cache, error) {
	if budget <= 0 {
		return nil, fmt.Errorf("cache budget %d: must be positive", budget)
	}
	c := &Cache{budget: budget}
	c.max.Store(budget)
	// ristretto wants ~10 counters per item it may hold; batch files are
	// tens of KiB to MiBs, so 4 KiB per item is a generous lower bound.
	counters := max(budget/4096*10, 10_000)
	rc, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters:        counters,
		MaxCost:            budget,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict: func(it *ristretto.Item[*entry]) {
			c.evictions.Add(1)
			c.evictedBytes.Add(uint64(it.Cost))
			c.evicted()
		},
		OnReject: func(it *ristretto.Item[*entry]) { c.rejected.Add(1) },
	})
	if err != nil {
		return nil, fmt.Errorf("ristretto: %w", err)
	}
	c.rc = rc
	return c, nil
}

// Get returns the value for key.
func (c *Cache) Get(key string) (*blob.Blob, bool) {
	e, ok := c.rc.Get(key)
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	if c.puts.Load()-e.put >= reuseDistance {
		c.reused.Add(1)
		c.windowReused.Add(1)
	}
	return e.b, true
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
	ok := c.rc.Set(key, &entry{b: b, put: c.puts.Add(1)}, max(b.Len(), 1))
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
	c.reserved.Add(delta)
	c.resizeLocked()
}

// OnResize sets f to be told the cache's new limit whenever it changes
// (a scan began or ended, bytes were lent or given back), and whether a
// scan is on. Set it before the cache is used; f must be quick.
func (c *Cache) OnResize(f func(max int64, scan bool)) { c.onResize = f }

// resizeLocked applies the limit: the budget less what is lent, or an
// eighth of the budget during a scan, and never less than that eighth;
// c.resMu is held.
func (c *Cache) resizeLocked() {
	floor := max(c.budget/8, 1)
	lim := max(c.budget-max(c.reserved.Load(), 0), floor)
	if c.scan.Load() {
		lim = floor
	}
	if c.max.Swap(lim) == lim {
		return
	}
	c.rc.UpdateMaxCost(lim)
	if c.onResize != nil {
		c.onResize(lim, c.scan.Load())
	}
}

// evicted weighs the evictions a window at a time: see the package doc.
func (c *Cache) evicted() {
	if c.windowEvictions.Add(1)%scanWindow != 0 {
		return
	}
	reused := c.windowReused.Swap(0)
	c.resMu.Lock()
	defer c.resMu.Unlock()
	switch scan := c.scan.Load(); {
	case !scan && reused <= scanMaxReused:
		c.scan.Store(true)
		c.scans.Add(1)
	case scan && reused >= unscanMinReused:
		c.scan.Store(false)
	default:
		return
	}
	c.resizeLocked()
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
	Max          int64  `json:"max"`      // the limit now: budget less reserved, or budget/8 in a scan
	Reused       uint64 `json:"reused"`   // hits on entries put at least two puts before
	Scan         bool   `json:"scan"`     // shrunk now: evictions showed nothing read again
	Scans        uint64 `json:"scans"`    // scans begun
}

// Stats returns the counters and the bytes held now.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Puts: c.puts.Load(), Rejected: c.rejected.Load(),
		Evictions: c.evictions.Load(), EvictedBytes: c.evictedBytes.Load(),
		Bytes: c.rc.MaxCost() - c.rc.RemainingCost(), Budget: c.budget, Reserved: c.reserved.Load(),
		Max: c.max.Load(), Reused: c.reused.Load(), Scan: c.scan.Load(), Scans: c.scans.Load(),
	}
}

// Close releases the cache's goroutines.
func (c *Cache) Close() { c.rc.Close() }
