package cache

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/zenithfs/zenithfs/blob"
)

func TestBudgetRespectedUnderChurn(t *testing.T) {
	const budget = 4 << 20
	c := newCache(t, budget)
	for i := 0; i < 2000; i++ {
		c.Put(fmt.Sprintf("k%d", i), blob.Bytes(make([]byte, 64<<10+i)))
		if i%10 == 0 {
			c.Get(fmt.Sprintf("k%d", i/2)) // some re-use, so admission has frequencies to weigh
		}
		if st := c.Stats(); st.Bytes > budget {
			t.Fatalf("after %d puts the cache holds %d bytes, budget %d", i+1, st.Bytes, budget)
		}
	}
	st := c.Stats()
	if st.Evictions == 0 && st.Rejected == 0 {
		t.Fatalf("125 MiB through a 4 MiB cache evicted and rejected nothing: %+v", st)
	}
}

func TestHitAfterPutAndValueIntact(t *testing.T) {
	c, _ := New(1 << 20)
	defer c.Close()
	v := bytes.Repeat([]byte("ab"), 1000)
	c.Put("x", blob.Bytes(v))
	got, ok := c.Get("x")
	if !ok || !bytes.Equal(mustData(t, got), v) {
		t.Fatalf("get after put: ok=%v", ok)
	}
	if _, ok := c.Get("y"); ok {
		t.Fatal("hit on a key never put")
	}
	if c.Put("big", blob.Bytes(make([]byte, 2<<20))) {
		t.Fatal("accepted a value larger than the budget")
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func mustData(t *testing.T, b *blob.Blob) []byte {
	t.Helper()
	d, err := b.Data()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Memory lent to built blocks is taken from the cache: after AddReserved
// the next puts evict down to budget − reserved, and giving it back lets
// the cache fill again.
func TestReservedShrinksTheCache(t *testing.T) {
	const budget = 4 << 20
	c := newCache(t, budget)
	put := func(from, n int) {
		for i := from; i < from+n; i++ {
			c.Put(fmt.Sprintf("k%d", i), blob.Bytes(make([]byte, 64<<10)))
		}
	}
	put(0, 64) // 4 MiB
	if st := c.Stats(); st.Bytes < budget*3/4 {
		t.Fatalf("a 4 MiB cache holds %d bytes after 4 MiB of puts", st.Bytes)
	}
	c.AddReserved(3 << 20)
	put(1000, 4)
	if st := c.Stats(); st.Bytes > 1<<20 || st.Reserved != 3<<20 {
		t.Fatalf("3 MiB reserved of 4: the cache holds %d bytes (reserved %d), want ≤ 1 MiB", st.Bytes, st.Reserved)
	}
	if c.Put("big", blob.Bytes(make([]byte, 2<<20))) {
		t.Fatal("accepted a 2 MiB value with 1 MiB left to the cache")
	}
	c.AddReserved(-3 << 20)
	for range 20 { // admission weighs frequencies: ask for the new keys again
		put(2000, 48)
		for j := 2000; j < 2048; j++ {
			c.Get(fmt.Sprintf("k%d", j))
		}
	}
	if st := c.Stats(); st.Bytes <= 1<<20 {
		t.Fatalf("the reserve given back, the cache still holds only %d bytes", st.Bytes)
	}
}

// newCache is a cache of budget bytes, closed when the test ends.
func newCache(t *testing.T, budget int64) *Cache {
	t.Helper()
	c, err := New(budget)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// rereadTail reads the last files of scanned's pass over a 4 MiB cache of
// 64 KiB files again, newest first: the shrunk cache evicted them, the
// full one would hold them, so the misses end the scan.
func rereadTail(c *Cache, prefix string, size int) {
	for i := 255; i >= 200; i-- {
		read(c, fmt.Sprintf("%s%d", prefix, i), size)
	}
}

// read is what the batch store does for a batch: look (a miss), put it,
// and the reader's open (Reopen: the same read, not a re-read).
func read(c *Cache, key string, size int) {
	if _, ok := c.Get(key); ok {
		return
	}
	c.Put(key, blob.Bytes(make([]byte, size)))
	c.Reopen(key)
}

// resizes records what OnResize tells.
type resizes struct {
	max  []int64
	scan []bool
}

func watch(c *Cache) *resizes {
	r := &resizes{}
	c.OnResize(func(max int64, scan bool) { r.max = append(r.max, max); r.scan = append(r.scan, scan) })
	return r
}

// scanned reads 4× what the cache holds in order and checks that a scan
// began.
func scanned(t *testing.T, c *Cache, prefix string, size int) {
	t.Helper()
	n := int(4 * c.Budget() / int64(size))
	for i := range n {
		read(c, fmt.Sprintf("%s%d", prefix, i), size)
	}
	st := c.Stats()
	if !st.Scan || st.Scans != 1 || st.Max != c.Budget()/8 || st.Reused != 0 {
		t.Fatalf("after an in-order pass over 4× the budget: %+v", st)
	}
	// The shrink evicts at the next puts (ristretto's admission may
	// decline a put, and then stops evicting for it).
	for i := n; st.Bytes > c.Budget()/8 && i < n+32; i++ {
		read(c, fmt.Sprintf("%s%d", prefix, i), size)
		st = c.Stats()
	}
	if st.Bytes > c.Budget()/8 {
		t.Fatalf("in a scan the cache holds %d bytes, more than an eighth of %d: %+v", st.Bytes, c.Budget(), st)
	}
}

func TestScanShrinksAndRereadsGrowItBack(t *testing.T) {
	const budget, size = 4 << 20, 64 << 10 // 64 values fit
	c := newCache(t, budget)
	r := watch(c)
	scanned(t, c, "a", size)
	if fmt.Sprint(r.max, r.scan) != fmt.Sprint([]int64{budget / 8}, []bool{true}) {
		t.Fatalf("OnResize told %v %v, want [%d] [true]", r.max, r.scan, budget/8)
	}
	// A second reader trails the first by three batches, within what the
	// shrunk cache holds: the cache is useful again and grows back.
	grew := -1
	for i := 0; i < 256 && grew < 0; i++ {
		read(c, fmt.Sprintf("b%d", i), size)
		if i >= 3 {
			read(c, fmt.Sprintf("b%d", i-3), size)
		}
		if !c.Stats().Scan {
			grew = i
		}
	}
	st := c.Stats()
	if grew < 0 || st.Max != budget || st.Reused+st.GhostHits == 0 {
		t.Fatalf("with re-reads the cache did not grow back: %+v", st)
	}
	if fmt.Sprint(r.max, r.scan) != fmt.Sprint([]int64{budget / 8, budget}, []bool{true, false}) {
		t.Fatalf("OnResize told %v %v, want [%d %d] [true false]", r.max, r.scan, budget/8, budget)
	}
	// (Once full again, ristretto's admission declines newcomers read
	// less often than the entries they would evict, and the trailing
	// reader's re-reads miss: a scan may begin again. Not asserted.)
}

// A reader going through the files in another order each epoch, over data
// a little bigger than the cache, starts a scan in the first epoch (no
// file is read twice in it); in the next, its misses on files the full
// cache would still hold end the scan.
func TestMissesTheFullCacheWouldServeEndAScan(t *testing.T) {
	const budget, size = 4 << 20, 64 << 10
	c := newCache(t, budget)
	scanned(t, c, "a", size)
	rereadTail(c, "a", size)
	st := c.Stats()
	if st.Scan || st.Max != budget || st.GhostHits < unscanMinReused {
		t.Fatalf("misses on files the full cache holds did not end the scan: %+v", st)
	}
	// A miss on a file evicted before the scan began is a miss for the
	// full cache too: no ghost.
	before := st.GhostHits
	read(c, "a0", size)
	if st := c.Stats(); st.GhostHits != before {
		t.Fatalf("a miss the full cache would not serve counted: %+v", st)
	}
}

// During a scan a batch too big for the shrunk cache is not kept, but it
// counts as evicted: reading such batches again ends the scan.
func TestTooBigForTheShrunkCacheCountsAsEvicted(t *testing.T) {
	const budget = 4 << 20
	c := newCache(t, budget)
	scanned(t, c, "a", 64<<10)
	for i := range 2 * scanWindow {
		read(c, fmt.Sprintf("big%d", i%3), 1<<20) // 1 MiB > budget/8; three of them (the full cache holds them), read in turns
	}
	if st := c.Stats(); st.Scan || st.GhostHits == 0 {
		t.Fatalf("re-reading batches too big for the shrunk cache did not end the scan: %+v", st)
	}
}

func TestNoScanWhenTheDataFits(t *testing.T) {
	const budget, size = 4 << 20, 64 << 10
	c := newCache(t, budget)
	for epoch := range 3 {
		for i := range 48 { // three quarters of the budget
			read(c, fmt.Sprintf("k%d", i), size)
		}
		if st := c.Stats(); st.Scan || st.Max != budget || st.Evictions != 0 {
			t.Fatalf("epoch %d over data that fits: %+v", epoch, st)
		}
	}
	if st := c.Stats(); st.Reused != 2*48 || st.Hits != 48+2*48 {
		t.Fatalf("two epochs re-read from the cache: %+v", st)
	}
}

func TestReservedAndScanShareTheLimit(t *testing.T) {
	const budget = 4 << 20
	c := newCache(t, budget)
	r := watch(c)
	c.AddReserved(1 << 20)
	if st := c.Stats(); st.Max != budget-1<<20 || r.max[len(r.max)-1] != st.Max {
		t.Fatalf("1 MiB lent: %+v, told %v", st, r.max)
	}
	c.AddReserved(16 << 20)
	if st := c.Stats(); st.Max != budget/8 {
		t.Fatalf("more than the budget lent: limit %d, want the floor %d", st.Max, budget/8)
	}
	c.AddReserved(-16 << 20)
	scanned(t, c, "a", 64<<10)
	c.AddReserved(1 << 20) // lent during the scan: the limit stays at the floor
	if st := c.Stats(); st.Max != budget/8 {
		t.Fatalf("lent during a scan: limit %d, want the floor %d", st.Max, budget/8)
	}
	rereadTail(c, "a", 64<<10) // ends the scan
	if st := c.Stats(); st.Scan || st.Max != budget-2<<20 || r.max[len(r.max)-1] != st.Max {
		t.Fatalf("after the scan with 2 MiB lent: %+v, told %v", st, r.max)
	}
}

// Readers putting the same batches at once (each taking the same
// prefetched batch) make ristretto "reject" the second put of a key it is
// still adding: the cache holds the key, nothing was evicted, and no scan
// may begin (before, one did, and the cache was emptied under readers that
// re-read everything: prefetch.TestEveryBatchIsBuiltOnceUnderConcurrency).
func TestConcurrentPutsOfOneKeyAreNoEvictions(t *testing.T) {
	c := newCache(t, 64<<20)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 2000 {
				c.Put(fmt.Sprint("k", k), blob.Bytes([]byte("abcd")))
			}
		}()
	}
	wg.Wait()
	if st := c.Stats(); st.Scans != 0 || st.Evictions != 0 {
		t.Fatalf("concurrent puts of the same keys into a cache they fit: %+v", st)
	}
}
