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
	_, err := c.get(context.Background(), "k", func(context.Context) (arrow.RecordBatch, error) {
		panic("malformed input")
	})
	if !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("err = %v, want a format.ErrCorrupt for the panic", err)
	}
}

func TestSegmentCacheKeepsAnOversizedSegmentAlone(t *testing.T) {
	c := newSegCache(1 << 10)
	rec := func(n int) arrow.RecordBatch {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		defer b.Release()
		for i := range n {
			b.Append(int64(i))
		}
		a := b.NewArray()
		return array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{a}, int64(n))
	}
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
