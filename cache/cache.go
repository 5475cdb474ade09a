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
// again, the Go heap squeezed under them). So the cache weighs its
// evictions a window (scanWindow) at a time. A window with almost no hit
// that was a re-read (Get; Reopen is the hit of the read that put the
// value, e.g. the open after a lookup that built the file) starts a
// scan: the cache is emptied and holds at most an eighth of its budget.
// During a scan it remembers the keys it evicted that the full cache
// would still hold (a ghost list of up to 7/8 of the budget), and a miss
// on one of them counts as a re-read the full cache would have served; a
// window with enough of those, or of real re-reads, ends the scan and the
// cache grows back. Values ristretto's admission policy declines, and
// values too big for the shrunk cache, count as evicted at once. A
// dataset that fits evicts nothing and keeps it all. OnResize tells the
// owner of the memory (the memfd maker) the new size.
package cache

import (
	"fmt"
	"runtime"
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
	closing  atomic.Bool  // Close has begun: evictions are not weighed
	shrink   atomic.Bool  // a scan began: empty the cache at the next Put
	clearMu  sync.Mutex   // orders a Clear and Close
	onResize func(max int64, scan bool)

	ghostMu    sync.Mutex
	ghost      map[string]uint64 // key → its latest place in ghostQ (seq)
	ghostQ     []ghostKey        // oldest first
	ghostBytes int64
	ghostSeq   uint64

	hits, misses, puts, rejected, evictions atomic.Uint64
	evictedBytes, reused, ghostHits, scans  atomic.Uint64
	windowEvictions, windowReused           atomic.Uint64
}

// entry is a cached value and its key (ristretto's items carry a hash).
type entry struct {
	key string
	b   *blob.Blob
}

// ghostKey is a key evicted during a scan, and its cost.
type ghostKey struct {
	key  string
	cost int64
	seq  uint64
}

const (
	// scanWindow is how many evictions the cache weighs at once.
	scanWindow = 32
	// A window with at most scanMaxReused re-reads is a scan; one with
	// at least unscanMinReused ends it.
	scanMaxReused, unscanMinReused = 1, 4
)

// New returns a cache holding at most budget bytes of values.
func New(budget int64) (*Cache, error) {
	if budget <= 0 {
		return nil, fmt.Errorf("cache budget %d: must be positive", budget)
	}
	c := &Cache{budget: budget, ghost: map[string]uint64{}}
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
			key, cost := itemKey(it)
			c.evictedBytes.Add(uint64(cost))
			c.evicted(key, cost)
		},
		// A value the admission policy declines for want of room is
		// evicted at once. ristretto also "rejects" a second put of a key
		// it is still adding (two readers taking the same prefetched
		// batch): that one the cache holds, and it is no eviction.
		OnReject: func(it *ristretto.Item[*entry]) {
			c.rejected.Add(1)
			if key, cost := itemKey(it); c.rc.RemainingCost() < cost {
				c.evicted(key, cost)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("ristretto: %w", err)
	}
	c.rc = rc
	return c, nil
}

// itemKey is an evicted item's key and cost: ristretto may evict an item
// whose value it no longer holds (no key; it still counts, without a
// ghost), and its Clear leaves the cost unset.
func itemKey(it *ristretto.Item[*entry]) (string, int64) {
	if it.Value == nil {
		return "", it.Cost
	}
	return it.Value.key, max(it.Cost, it.Value.b.Len())
}

// Get returns the value for key; a hit counts as a re-read (package doc).
func (c *Cache) Get(key string) (*blob.Blob, bool) { return c.get(key, true) }

// Reopen is Get for a reader that has just put key itself and opens it
// (a lookup built the file, the open follows): a hit is not a re-read.
func (c *Cache) Reopen(key string) (*blob.Blob, bool) { return c.get(key, false) }

func (c *Cache) get(key string, reread bool) (*blob.Blob, bool) {
	e, ok := c.rc.Get(key)
	if !ok {
		c.misses.Add(1)
		if reread && c.scan.Load() && c.unghost(key) {
			c.ghostHits.Add(1)
			c.windowReused.Add(1)
		}
		return nil, false
	}
	c.hits.Add(1)
	if reread {
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

// Put stores b under key (cost b.Len()). A value larger than the limit
// now is not kept (during a scan it counts as evicted). The admission
// policy may decline a value; Put reports whether it was accepted into
// the buffer. Put waits until the value is visible to Get, so a read
// right after a Put hits.
func (c *Cache) Put(key string, b *blob.Blob) bool {
	if b.Len() > c.rc.MaxCost() {
		c.rejected.Add(1)
		if c.scan.Load() && b.Len() <= c.budget {
			c.evicted(key, b.Len())
		}
		return false
	}
	if c.shrink.Swap(false) {
		c.clear()
	}
	c.puts.Add(1)
	ok := c.rc.Set(key, &entry{key: key, b: b}, max(b.Len(), 1))
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
	lim := max(c.budget-max(c.reserved.Load(), 0), c.floor())
	if c.scan.Load() {
		lim = c.floor()
	}
	if c.rc.MaxCost() == lim {
		return
	}
	c.rc.UpdateMaxCost(lim)
	if c.onResize != nil {
		c.onResize(lim, c.scan.Load())
	}
}

// floor is the least the cache holds: an eighth of its budget, its limit
// during a scan.
func (c *Cache) floor() int64 { return max(c.budget/8, 1) }

// evicted weighs the evictions a window at a time and, during a scan,
// remembers the key: see the package doc.
func (c *Cache) evicted(key string, cost int64) {
	if c.closing.Load() {
		return
	}
	if key != "" && c.scan.Load() {
		c.addGhost(key, cost)
	}
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
		// Emptied at the next Put (not here: this runs on ristretto's
		// goroutine, which Clear stops). Lowering the limit alone is not
		// enough: the admission policy declines newcomers less read than
		// the entries they would evict, and then evicts nothing.
		c.shrink.Store(true)
	case scan && reused >= unscanMinReused:
		c.scan.Store(false)
		c.clearGhosts()
	default:
		return
	}
	c.resizeLocked()
}

// addGhost remembers key, evicted during a scan, while the keys evicted
// after it total less than what the full cache holds beyond the shrunk one.
func (c *Cache) addGhost(key string, cost int64) {
	c.ghostMu.Lock()
	defer c.ghostMu.Unlock()
	c.ghostSeq++
	c.ghost[key] = c.ghostSeq
	c.ghostQ = append(c.ghostQ, ghostKey{key: key, cost: cost, seq: c.ghostSeq})
	c.ghostBytes += cost
	for len(c.ghostQ) > 0 && c.ghostBytes > c.budget-c.floor() {
		g := c.ghostQ[0]
		c.ghostQ[0] = ghostKey{}
		c.ghostQ = c.ghostQ[1:]
		c.ghostBytes -= g.cost
		if c.ghost[g.key] == g.seq {
			delete(c.ghost, g.key)
		}
	}
}

// unghost reports whether key was a ghost, and forgets it: one miss on a
// ghost counts once.
func (c *Cache) unghost(key string) bool {
	c.ghostMu.Lock()
	defer c.ghostMu.Unlock()
	_, ok := c.ghost[key]
	delete(c.ghost, key)
	return ok
}

// clearGhosts forgets the ghosts when a scan ends.
func (c *Cache) clearGhosts() {
	c.ghostMu.Lock()
	defer c.ghostMu.Unlock()
	clear(c.ghost)
	c.ghostQ, c.ghostBytes = nil, 0
}

// Stats are counters since New.
type Stats struct {
	Hits         uint64 `json:"hits"`
	Misses       uint64 `json:"misses"`
	Puts         uint64 `json:"puts"`
	Rejected     uint64 `json:"rejected"` // declined by the admission policy, or too big for the limit now
	Evictions    uint64 `json:"evictions"`
	EvictedBytes uint64 `json:"evicted_bytes"`
	Bytes        int64  `json:"bytes"`
	Budget       int64  `json:"budget"`
	Reserved     int64  `json:"reserved"`   // lent to built blocks (AddReserved)
	Max          int64  `json:"max"`        // the limit now: budget less reserved, or budget/8 in a scan
	Reused       uint64 `json:"reused"`     // hits that were re-reads (not the open after the put)
	GhostHits    uint64 `json:"ghost_hits"` // misses during a scan the full cache would have served
	Scan         bool   `json:"scan"`       // shrunk now: evictions showed nothing read again
	Scans        uint64 `json:"scans"`      // scans begun
}

// Stats returns the counters and the bytes held now.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Puts: c.puts.Load(), Rejected: c.rejected.Load(),
		Evictions: c.evictions.Load(), EvictedBytes: c.evictedBytes.Load(),
		Bytes: c.rc.MaxCost() - c.rc.RemainingCost(), Budget: c.budget, Reserved: c.reserved.Load(),
		Max: c.rc.MaxCost(), Reused: c.reused.Load(), GhostHits: c.ghostHits.Load(), Scan: c.scan.Load(), Scans: c.scans.Load(),
	}
}

// clear empties the cache as a scan begins; the entries count as evicted
// (during the scan: ghosts).
func (c *Cache) clear() {
	c.clearMu.Lock()
	defer c.clearMu.Unlock()
	if !c.closing.Load() {
		c.rc.Clear()
		// The values may hold what only the collector frees (memfd
		// batches, closed by their cleanups): collect now, while the
		// heap is still held to the limit their memory left it, so that
		// it does not grow into their room before they are gone.
		runtime.GC()
	}
}

// Close releases the cache's goroutines.
func (c *Cache) Close() {
	c.clearMu.Lock()
	defer c.clearMu.Unlock()
	c.closing.Store(true)
	c.rc.Close()
}
