package fs

import (
	"context"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/zenithfs/zenithfs/scheduler"
)

// newGPUsFile returns the node for .zenith/gpus: one tab-separated line per
// GPU — index, name, memory, and the job holding it ("-" when free).
func newGPUsFile(sh *shared, s *scheduler.Scheduler) gofs.InodeEmbedder {
	return newCtlGen(sh, func(context.Context) ([]byte, error) { return scheduler.FormatGPUs(s.GPUs()), nil })
}
