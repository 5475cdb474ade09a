package cache

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/zenithfs/zenithfs/blob"
)

func TestBudgetRespectedUnderChurn(t *testing.T) {
	const budget = 4 << 20
	c, err := New(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	c, err := New(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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

// read is what the batch store does for a batch: look (a miss), put it,
// and the reader's open (a hit right after the put, not a re-read).
func read(c *Cache, key string, size int) {
	if _, ok := c.Get(key); ok {
		return
	}
	c.Put(key, blob.Bytes(make([]byte, size)))
	c.Get(key)
}

func TestScanShrinksAndRereadsGrowItBack(t *testing.T) {
	const budget, size = 4 << 20, 64 << 10 // 64 values fit
	c, err := New(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sizes []int64
	var scans []bool
	c.OnResize(func(max int64, scan bool) { sizes = append(sizes, max); scans = append(scans, scan) })

	// In order through 4× what the cache holds: nothing read again.
	for i := range 256 {
		read(c, fmt.Sprintf("a%d", i), size)
	}
	st := c.Stats()
	if !st.Scan || st.Scans != 1 || st.Max != budget/8 || st.Reused != 0 {
		t.Fatalf("after an in-order pass over 4× the budget: %+v", st)
	}
	if st.Bytes > budget/8 {
		t.Fatalf("in a scan the cache holds %d bytes, more than an eighth of %d", st.Bytes, budget)
	}
	if len(sizes) != 1 || sizes[0] != budget/8 || !scans[0] {
		t.Fatalf("OnResize told %v %v, want [%d] [true]", sizes, scans, budget/8)
	}

	// Now a second reader trails the first by three batches: what it reads
	// was put before, so the cache is useful again.
	for i := range 256 {
		read(c, fmt.Sprintf("b%d", i), size)
		if i >= 3 {
			read(c, fmt.Sprintf("b%d", i-3), size)
		}
	}
	st = c.Stats()
	if st.Scan || st.Max != budget || st.Reused == 0 {
		t.Fatalf("with re-reads the cache did not grow back: %+v", st)
	}
	if len(sizes) != 2 || sizes[1] != budget || scans[1] {
		t.Fatalf("OnResize told %v %v, want [%d %d] [true false]", sizes, scans, budget/8, budget)
	}
}

func TestNoScanWhenTheDataFits(t *testing.T) {
	const budget, size = 4 << 20, 64 << 10
	c, err := New(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for epoch := range 3 {
		for i := range 48 { // three quarters of the budget
			read(c, fmt.Sprintf("k%d", i), size)
		}
		if st := c.Stats(); st.Scan || st.Max != budget || st.Evictions != 0 {
			t.Fatalf("epoch %d over data that fits: %+v", epoch, st)
		}
	}
	// The last two put (fewer than reuseDistance puts since) never count
	// as re-read: nothing was put after them (a reader opening the file it
	// just read again).
	if st := c.Stats(); st.Reused != 2*(48-2) || st.Hits != 48+2*48 {
		t.Fatalf("two epochs re-read from the cache: %+v", st)
	}
}

func TestReservedAndScanShareTheLimit(t *testing.T) {
	const budget = 8 << 20
	c, err := New(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last int64
	c.OnResize(func(max int64, scan bool) { last = max })
	c.AddReserved(4 << 20)
	if st := c.Stats(); st.Max != budget-4<<20 || last != st.Max {
		t.Fatalf("4 MiB lent: %+v, told %d", st, last)
	}
	c.AddReserved(16 << 20)
	if st := c.Stats(); st.Max != budget/8 {
		t.Fatalf("more than the budget lent: limit %d, want the floor %d", st.Max, budget/8)
	}
	c.AddReserved(-20 << 20)
	if st := c.Stats(); st.Max != budget || last != budget {
		t.Fatalf("all given back: %+v, told %d", st, last)
	}
}
