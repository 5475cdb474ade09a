package dataset

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
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
