package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// addJobs attaches .zenith/jobs and .zenith/gpus when a scheduler is configured.
func (z *zenithDir) addJobs(ctx context.Context) {
	s := z.cfg.Scheduler
	if s == nil {
		return
	}
	z.AddChild("jobs", z.NewPersistentInode(ctx, newJobsDir(z.sh, s), gofs.StableAttr{Mode: syscall.S_IFDIR}), false)
	z.AddChild("gpus", z.NewPersistentInode(ctx, newGPUsFile(z.sh, s), gofs.StableAttr{Mode: syscall.S_IFREG}), false)
}
