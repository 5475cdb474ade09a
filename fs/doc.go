// Package fs is the FUSE adapter of zenithfs: go-fuse nodes for the dataset
// directories, their batch files, and the .zenith control tree. It is the
// only package that imports go-fuse, and the one place (errno.go) where
// errors become errno values.
//
// # Shape
//
// The logic lives below: dataset/ knows how many batches a dataset has,
// their exact sizes and how to build their bytes; prefetch/ serves those
// bytes from a bounded cache and reads ahead of each reader; scheduler/
// runs jobs. A node here is a few lines over one of those calls. Nodes embed
// fs.Inode, implement only the operations they need, and assert each at
// compile time (a mistyped method would otherwise compile and do nothing).
//
// # Immutable files, long timeouts
//
// A batch file never changes while its sources keep their identity, so the
// kernel may cache everything: entries and attributes get long timeouts,
// opens return FOPEN_KEEP_CACHE so the page cache survives across opens,
// and reads are large (the mount asks for big max_read and read-ahead).
// Batch inode numbers are derived from (dataset, generation, batch), so a
// re-indexed dataset gets new inodes rather than stale cached pages.
//
// # Source changes
//
// Every lookup, readdir and open of a dataset path asks the dataset to check
// its sources (rate-limited inside dataset). When they changed, the dataset
// is re-indexed into a new generation; the directory invalidates the
// kernel's entries for its children, and an open of a node of the old
// generation fails with ESTALE, which makes the kernel look the name up
// again and open the new generation's file. A file handle already open keeps
// the complete bytes it was opened with, so no reader ever sees a file that
// mixes old and new rows.
//
// # Errors and panics
//
// Handlers return wrapped errors from below; toErrno maps them. A panic in a
// handler is recovered (go-fuse's PanicHandler, and shared.guard in the
// control tree): the caller gets EIO, the log gets one line with the stack,
// .zenith/errors gets the reason, and the mount keeps serving.
//
// # Lock order
//
// fs holds no locks of its own across calls below it: dataset serialises
// its re-index, prefetch its cache; the errorRing mutex is a leaf.
package fs
