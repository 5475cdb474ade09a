package fs

import "context"

// addJobs attaches .zenith/jobs and .zenith/gpus when a scheduler is configured.
func (z *zenithDir) addJobs(ctx context.Context) {}
