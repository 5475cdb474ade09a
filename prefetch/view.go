package prefetch

import (
	"context"

	"github.com/zenithfs/zenithfs/blob"
)

// View is an ordered sequence of batch files: a dataset snapshot in its
// natural order, or a derived view (shuffled epoch, rank share, npz).
type View interface {
	// NumBatches is the number of files in the view.
	NumBatches() int
	// Key identifies the bytes of file k: equal keys mean equal bytes, and
	// the key changes when the sources change (it carries their identity).
	Key(k int) string
	// Build produces file k's bytes.
	Build(ctx context.Context, k int) ([]byte, error)
}

// InPlaceBuilder is a View that can tell some files' exact sizes before
// building them and build those into a buffer of that size (a memfd's
// pages), with no copy of its own.
type InPlaceBuilder interface {
	// KnownSize is file k's size when known without building.
	KnownSize(k int) (int64, bool)
	// BuildInto builds file k into dst of exactly KnownSize bytes.
	BuildInto(ctx context.Context, k int, dst []byte) error
}

// Sealer turns files into what the cache holds (e.g. memfds).
type Sealer interface {
	// Seal takes a built file's bytes.
	Seal(b []byte) *blob.Blob
	// Fill makes a file of size bytes that fill writes; fill's error is
	// returned as is.
	Fill(size int64, fill func(dst []byte) error) (*blob.Blob, error)
}
