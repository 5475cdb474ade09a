package prefetch

import "context"

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
