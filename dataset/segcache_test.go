package dataset

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/zenithfs/zenithfs/format"
)

func TestSegmentDecodePanicIsAnError(t *testing.T) {
	c := newSegCache(1 << 20)
	_, err := c.get(context.Background(), "k", false, func(context.Context) (arrow.RecordBatch, error) {
		panic("malformed input")
	})
	if !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("err = %v, want a format.ErrCorrupt for the panic", err)
	}
}

// int64Record is a record of n int64 values (8n bytes).
func int64Record(n int) arrow.RecordBatch {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := range n {
		b.Append(int64(i))
	}
	a := b.NewArray()
	return array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{a}, int64(n))
}

func TestSegmentCacheKeepsAnOversizedSegmentAlone(t *testing.T) {
	c := newSegCache(1 << 10)
	rec := int64Record
	small, big := rec(10), rec(1000) // 80 B, 8000 B > 1 KiB
	c.put("small", small)
	c.put("big", big)
	if c.has("small") || !c.has("big") {
		t.Fatalf("after an oversized put: small kept %v, big kept %v; want only big", c.has("small"), c.has("big"))
	}
	c.put("small", small)
	if !c.has("small") || c.has("big") {
		t.Fatalf("after the next put: small kept %v, big kept %v; want only small", c.has("small"), c.has("big"))
	}
	if _, _, b := c.stats(); b != recordBytes(small) {
		t.Fatalf("cache holds %d bytes, want %d", b, recordBytes(small))
	}
}

func (c *segCache) has(key string) bool {
	_, ok := c.cached(key)
	return ok
}

// Segments read ahead count against the room for more until a reader
// uses them or they are evicted.
func TestSegmentCacheCountsUnusedReadAheads(t *testing.T) {
	ctx := context.Background()
	sz := recordBytes(int64Record(25))
	c := newSegCache(5 * sz) // room for 5 segments
	seg := func(key string, ahead bool) {
		t.Helper()
		if _, err := c.get(ctx, key, ahead, func(context.Context) (arrow.RecordBatch, error) { return int64Record(25), nil }); err != nil {
			t.Fatal(err)
		}
	}
	ahead := func(key string) bool {
		t.Helper()
		start, room := c.startAhead(key, "cur", 10)
		if start {
			seg(key, true)
			c.doneAhead(key)
		}
		return room
	}
	seg("cur", false)
	for i, key := range []string{"a1", "a2", "a3", "a4", "a5"} {
		room := ahead(key)
		if want := i < 4; room != want { // cur and 4 ahead fill the budget
			t.Fatalf("read-ahead %d: room %v, want %v", i+1, room, want)
		}
	}
	if c.aheadBytes != 4*sz {
		t.Fatalf("aheadBytes = %d after 4 read-aheads of %d B", c.aheadBytes, sz)
	}
	seg("a1", false) // a reader uses a1
	if c.aheadBytes != 3*sz || !ahead("a5") {
		t.Fatalf("after a reader used one: aheadBytes = %d, and no room for another", c.aheadBytes)
	}
	for _, key := range []string{"x1", "x2", "x3", "x4", "x5"} { // evicts everything read ahead
		seg(key, false)
	}
	if c.aheadBytes != 0 {
		t.Fatalf("aheadBytes = %d after the segments read ahead were evicted", c.aheadBytes)
	}
}
