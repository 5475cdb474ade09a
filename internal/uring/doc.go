// Package uring is a small io_uring binding for batched file reads, written
// on golang.org/x/sys/unix alone, with a pread fallback.
//
// # Ring layout
//
// io_uring_setup(2) returns a file descriptor and fills io_uring_params with
// the sizes of the two rings and the offsets of their fields. Three regions
// of that fd are mapped (MAP_SHARED): the submission (SQ) ring at offset 0,
// the completion (CQ) ring at 0x8000000 — the same mapping as the SQ ring
// when the kernel reports IORING_FEAT_SINGLE_MMAP (5.4+) — and the array of
// 64-byte submission queue entries (SQEs) at 0x10000000. The SQ ring holds
// head, tail, mask and an indirection array of SQE indices; this package
// sets array[i] = i once, so the SQE for tail value t is sqes[t&mask]. The CQ
// ring holds head, tail, mask and the 16-byte completion entries (CQEs)
// themselves. The structs in abi.go transcribe the uapi header; their sizes
// are checked at compile time.
//
// # Memory ordering
//
// We own SQ tail and CQ head; the kernel owns SQ head and CQ tail. A round
// writes its SQEs with plain stores and then publishes them with an atomic
// store of SQ tail; it reads CQ tail with an atomic load before reading the
// CQEs, and hands their slots back with an atomic store of CQ head after.
// sync/atomic operations are sequentially consistent, which covers the
// release/acquire pairs (smp_store_release / smp_load_acquire) that liburing
// uses. Without SQPOLL the kernel consumes SQEs only inside io_uring_enter,
// so SQ head is read after each enter to see how many were submitted.
//
// # Rounds and short reads
//
// Ring.ReadRanges prepares one IORING_OP_READ per range, up to the ring's
// size, and runs each round as io_uring_enter(to_submit, min_complete =
// every completion still owed, IORING_ENTER_GETEVENTS): one syscall submits
// the batch and waits for it, repeated only when the wait is interrupted
// (EINTR) or the kernel stopped submitting early. CQEs are matched to ranges
// by user_data, the range's index. More ranges than the ring holds go in
// further rounds; so do reads that came back short, for the rest of their
// range. A read that returns 0 bytes is the end of the file: that range
// reports the bytes it got and io.EOF. A negative result is the read's errno,
// wrapped with the fd and offset.
//
// Buffers handed to the kernel are pinned with runtime.Pinner for the round
// (so a buffer cannot be moved or freed — a stack buffer is moved to the heap
// by pinning) and the request slice is kept alive until every completion of
// the round is reaped. No completion ever outlives its round, and in-flight
// reads never exceed the SQ size, so the CQ ring (twice that) cannot
// overflow.
//
// A round whose io_uring_enter fails for good (ErrRingFailed) may have reads
// in flight, and closing the ring fd does not stop them: the kernel cancels
// a dying ring's requests asynchronously, and a read already copying
// finishes. So before returning, the round withdraws the SQEs the kernel has
// not consumed (lowering SQ tail back to SQ head), submits an
// IORING_OP_ASYNC_CANCEL for each read left (at most one per read, so the CQ
// still cannot overflow) and reaps completions for up to five seconds. Only
// then are the buffers unpinned. Reads still owed after that are logged and
// stranded: their buffers stay pinned, and the Ring reachable, for the rest
// of the process, so the kernel can never write into memory the Go heap has
// reused. (A late write still lands in the caller's buffer, with the bytes of
// the range it asked for.)
//
// # Concurrency
//
// A Ring is safe for concurrent use: a mutex is held for a whole
// submit-and-reap round, so one caller's completions are never seen by
// another. A Reader keeps a small pool of rings (up to GOMAXPROCS, at most
// 8, set up as concurrency demands) and gives each ReadRanges call a ring of
// its own, so concurrent callers do not queue behind one lock. A caller that
// finds every ring busy and the pool full waits for one; a failed ring is
// closed and dropped from the pool rather than returned, and that wakes the
// waiters to look again (for the fallback, or room for a fresh ring).
//
// # Fallback
//
// Reader's Mode is the --io-uring flag. ModeOff reads with pread(2).
// ModeOn fails in NewReader if no ring can be set up. ModeAuto sets up the
// first ring in NewReader; if that fails — ENOSYS on old kernels, EPERM or
// EACCES under seccomp or kernel.io_uring_disabled — it switches to pread
// for good and logs exactly one line. A ring that fails later (an
// io_uring_enter error other than EINTR/EAGAIN/EBUSY) does the same in
// ModeAuto, after redoing the unfinished ranges with pread, and callers
// waiting for a ring take pread too; in ModeOn that call fails with
// ErrRingFailed and the ring is replaced by a fresh one when next needed. If
// the failed rings were the last and no new one can be set up, ModeOn reads
// fail with an error wrapping ErrUnavailable (and the setup's errno) until one
// can. Stats counts which path the reads took.
package uring
