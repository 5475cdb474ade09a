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
