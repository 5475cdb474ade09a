package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/zenithfs/zenithfs/dataset"
)

// viewsChild returns the node for MOUNT/<dataset>/views.
func (d *datasetDir) viewsChild(ctx context.Context, s *dataset.Snapshot, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.ENOENT
}
