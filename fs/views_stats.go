package fs

import (
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// ViewStats are one view's read statistics, by canonical spec, for
// .zenith/datasets/<dataset> ("views"). A read is one open of a view file.
type ViewStats struct {
	Reads uint64 `json:"reads"`
	// PrefetchHits are reads whose bytes were ready: in the cache, the
	// prefetch buffer, or being built by a prefetch worker.
	PrefetchHits uint64 `json:"prefetch_hits"`
	// BuiltOnDemand are reads that had to build their file while the
	// reader waited (at open, or at the lookup that preceded it).
	BuiltOnDemand uint64  `json:"built_on_demand"`
	Errors        uint64  `json:"errors"`
	WaitSeconds   float64 `json:"wait_seconds"`
}

// ViewStats returns the per-view statistics of the dataset directory:
// empty until its views/ directory is first looked up.
func (d *datasetDir) ViewStats() map[string]ViewStats {
	out := map[string]ViewStats{}
	c := d.GetChild(viewsName)
	if c == nil {
		return out
	}
	vs, ok := c.Operations().(*viewsDir)
	if !ok {
		return out
	}
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for spec, c := range vs.stats {
		out[spec] = ViewStats{Reads: c.reads.Load(), PrefetchHits: c.hits.Load(), BuiltOnDemand: c.built.Load(),
			Errors: c.errors.Load(), WaitSeconds: time.Duration(c.waitNanos.Load()).Seconds()}
	}
	return out
}

// viewStatsOf returns the per-view statistics of the dataset named name
// in the mount whose root is root (from any node: n.Root()).
func viewStatsOf(root *gofs.Inode, name string) map[string]ViewStats {
	if c := root.GetChild(name); c != nil {
		if d, ok := c.Operations().(*datasetDir); ok {
			return d.ViewStats()
		}
	}
	return map[string]ViewStats{}
}
