package uring

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned for reads on a closed Ring or Reader.
var ErrClosed = errors.New("io_uring: closed")

// ErrRingFailed wraps errors of the ring itself (io_uring_enter failing for a
// reason other than an interruption), as opposed to errors of one read. A Ring
// that returned it is unusable; a Reader in ModeAuto then falls back to pread.
//
// Before returning it, the failed round withdraws the reads the kernel had
// not taken yet, asks it to cancel the others and waits up to drainTimeout
// for their completions. A read whose completion still has not come (its
// range's Err says how many were left) may yet be written into its buffer by
// the kernel; that buffer stays pinned for good, even after Close.
var ErrRingFailed = errors.New("io_uring: ring failed")

// maxRead caps one SQE's length; the kernel caps a read at MAX_RW_COUNT
// (2 GiB - 4 KiB) anyway, and the rest is resubmitted like any short read.
const maxRead = 1 << 30

// maxStalls bounds how many times in a row io_uring_enter may fail with
// EAGAIN/EBUSY/EINTR without any progress before the ring is declared failed.
const maxStalls = 10000

// drainTimeout bounds how long a failed round waits for the completions of
// the reads it still has in flight (see abandon). A variable so that tests
// can shorten it.
var drainTimeout = 5 * time.Second

// cancelTag marks the user_data of the IORING_OP_ASYNC_CANCEL entries a
// failed round submits; a read's user_data is its range index, far below.
const cancelTag = 1 << 63

// strandedRings keeps every Ring closed while reads were still in flight
// reachable for the rest of the process: a runtime.Pinner that becomes
// unreachable unpins its objects, and the kernel may still write into them.
var strandedRings struct {
	sync.Mutex
	rings []*Ring
}

// Req is one read: len(Buf) bytes of the file at Off. ReadRanges sets N to the
// bytes read and Err to nil, io.EOF (fewer than len(Buf) bytes before the end
// of the file) or the read's error. A range with an empty Buf reads nothing.
type Req struct {
	Off int64
	Buf []byte
	N   int
	Err error
}

// Ring is one io_uring instance set up for reads. It is safe for concurrent
// use: each submit-and-reap round holds a mutex, and a round reaps every
// completion it submitted before releasing it, so rounds of different callers
// never see each other's completions.
type Ring struct {
	mu     sync.Mutex
	fd     int
	closed bool
	failed error // set once the ring itself failed; sticky
	// stranded counts the reads of the failed round whose completions never
	// came (see abandon): their buffers are pinned by pinner for good.
	stranded int

	// enter is sysEnter; tests wrap it to make the ring fail on cue.
	enter func(fd int, toSubmit, minComplete, flags uint32) (int, error)

	// Mapped regions (cqMem aliases sqMem with IORING_FEAT_SINGLE_MMAP).
	sqMem, cqMem, sqeMem []byte
	single               bool

	// Pointers into the shared rings. The kernel writes sqHead and cqTail;
	// we write sqTail and cqHead.
	sqHead, sqTail *uint32
	cqHead, cqTail *uint32
	sqMask, cqMask uint32
	sqEntries      uint32
	cqEntries      uint32
	sqes           []sqe
	cqes           []cqe

	// pinner pins the buffers of the round in flight.
	pinner runtime.Pinner

	batches   atomic.Uint64 // rounds submitted
	resubmits atomic.Uint64 // short reads resubmitted for the rest
}

// New sets up a ring with room for entries submissions at once (the kernel
// rounds up to a power of two; 1..32768). Errors wrap the errno of
// io_uring_setup or mmap, so callers can tell a refusal (ENOSYS, EPERM,
// EACCES) with errors.Is.
func New(entries int) (*Ring, error) {
	if entries < 1 || entries > maxEntries {
		return nil, fmt.Errorf("io_uring: %d entries outside 1..%d: %w", entries, maxEntries, syscall.EINVAL)
	}
	var p params
	fd, err := sysSetup(uint32(entries), &p)
	if err != nil {
		return nil, fmt.Errorf("io_uring_setup(%d entries): %w", entries, err)
	}
	r := &Ring{fd: fd, sqEntries: p.sqEntries, cqEntries: p.cqEntries, enter: sysEnter}
	if err := r.mmap(&p); err != nil {
		r.unmap()
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

// mmap maps the SQ ring, the CQ ring (one mapping when the kernel offers
// IORING_FEAT_SINGLE_MMAP, which every kernel since 5.4 does) and the SQE
// array, and points the ring fields into them.
func (r *Ring) mmap(p *params) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	var err error
	if p.features&featSingleMmap != 0 {
		r.sqMem, err = unix.Mmap(r.fd, offSQRing, max(sqSize, cqSize), prot, flags)
		if err != nil {
			return fmt.Errorf("io_uring: mmap rings: %w", err)
		}
		r.cqMem = r.sqMem
		r.single = true
	} else {
		if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
			return fmt.Errorf("io_uring: mmap sq ring: %w", err)
		}
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("io_uring: mmap cq ring: %w", err)
		}
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(sqe{}))
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring: mmap sqes: %w", err)
	}

	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, p.sqOff.head)
	r.sqTail = u32(r.sqMem, p.sqOff.tail)
	r.sqMask = *u32(r.sqMem, p.sqOff.ringMask)
	r.cqHead = u32(r.cqMem, p.cqOff.head)
	r.cqTail = u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	// The SQ ring indexes the SQE array through an indirection array; map
	// slot i to SQE i once, so the SQE for a tail value is sqes[tail&mask].
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&r.sqMem[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return nil
}

func (r *Ring) unmap() {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
	}
	if r.cqMem != nil && !r.single {
		_ = unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		_ = unix.Munmap(r.sqMem)
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
}

// Close releases the ring. Reads after Close fail with ErrClosed. If the
// ring failed with reads still in flight (see ErrRingFailed), their buffers
// stay pinned, and the Ring reachable, for the rest of the process.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.unmap()
	// Closing the last reference to the ring makes the kernel cancel what
	// is left of it, but asynchronously (io_ring_exit_work): a read already
	// running in an io-wq worker still copies into its buffer afterwards.
	// So buffers are unpinned only by the round that reaped every
	// completion of theirs; those of reads it gave up on stay pinned.
	err := unix.Close(r.fd)
	if r.stranded > 0 {
		strandedRings.Lock()
		strandedRings.rings = append(strandedRings.rings, r)
		strandedRings.Unlock()
	} else {
		r.pinner.Unpin() // a no-op: rounds unpin what they pinned
	}
	if err != nil {
		return fmt.Errorf("io_uring: close ring: %w", err)
	}
	return nil
}

// Failed reports whether the ring itself has failed (see ErrRingFailed).
func (r *Ring) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed != nil
}

// failure returns the ring's failure, if any, and how many reads it left in
// flight.
func (r *Ring) failure() (error, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed, r.stranded
}

// Entries returns the size of the submission queue: the most reads one round
// submits.
func (r *Ring) Entries() int { return int(r.sqEntries) }

// Batches returns how many rounds (io_uring_enter submissions of a batch of
// reads) this ring has run.
func (r *Ring) Batches() uint64 { return r.batches.Load() }

// ReadRanges reads every range of reqs from fd with IORING_OP_READ. All
// ranges go to the kernel as one batch — several rounds of at most Entries()
// reads when there are more — and each round is one io_uring_enter that
// submits and waits. A read that returns fewer bytes than asked is
// resubmitted for the rest in the next round; a read that returns 0 bytes
// marks the end of the file (Err = io.EOF). A failed read's Err wraps its
// syscall.Errno with the fd and offset. ReadRanges returns the error
// of the lowest-indexed failed range (io.EOF counts), wrapped with its
// offset, or nil.
func (r *Ring) ReadRanges(fd int, reqs []Req) error {
	pending := make([]int, 0, len(reqs))
	for i := range reqs {
		q := &reqs[i]
		q.N, q.Err = 0, nil
		switch {
		case q.Off < 0:
			// An offset of -1 would mean "the file position" to the kernel.
			q.Err = fmt.Errorf("read fd %d at %d: negative offset: %w", fd, q.Off, syscall.EINVAL)
		case len(q.Buf) > 0:
			pending = append(pending, i)
		}
	}
	next := make([]int, 0, len(pending))
	owed := make([]bool, len(reqs)) // whose read of the round is not reaped yet
	for len(pending) > 0 {
		n := min(len(pending), int(r.sqEntries))
		var err error
		next, err = r.round(fd, reqs, pending[:n], next[:0], owed)
		if err != nil {
			// Everything not finished fails with the ring's error.
			for i := range reqs {
				if q := &reqs[i]; q.Err == nil && q.N < len(q.Buf) {
					q.Err = err
				}
			}
			break
		}
		// Resubmissions go after the ranges not yet tried; pending and
		// next swap buffers so no allocation happens per round.
		next = append(next, pending[n:]...)
		pending, next = next, pending
	}
	return firstError(reqs)
}

// firstError returns the error of the lowest-indexed failed range.
func firstError(reqs []Req) error {
	for i := range reqs {
		if q := &reqs[i]; q.Err != nil {
			if q.Err == io.EOF {
				return fmt.Errorf("read at %d: short read of %d/%d bytes: %w", q.Off, q.N, len(q.Buf), io.EOF)
			}
			return q.Err
		}
	}
	return nil
}

// round submits one read for each index in batch (len(batch) <= sqEntries)
// and reaps all their completions. It appends to requeue the indices whose
// reads came back short (or were interrupted) and returns it. An error
// return means the ring failed; the ranges' own errors are set on reqs.
// owed[i] is true while range i's read is submitted and not reaped.
func (r *Ring) round(fd int, reqs []Req, batch, requeue []int, owed []bool) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return requeue, ErrClosed
	}
	if r.failed != nil {
		return requeue, r.failed
	}

	// Fill the SQEs. Only this goroutine writes sqTail (we hold mu), so a
	// plain read of our own last store would do; the atomic load is for
	// the race detector's benefit.
	tail := atomic.LoadUint32(r.sqTail)
	for i, idx := range batch {
		q := &reqs[idx]
		buf := q.Buf[q.N:]
		if len(buf) > maxRead {
			buf = buf[:maxRead]
		}
		// The kernel writes into buf after this function's Go code has
		// moved on; pinning keeps the GC from moving or freeing it (a
		// stack buffer escapes to the heap through Pin) until Unpin below.
		r.pinner.Pin(&buf[0])
		r.sqes[(tail+uint32(i))&r.sqMask] = sqe{
			opcode:   opRead,
			fd:       int32(fd),
			off:      uint64(q.Off + int64(q.N)),
			addr:     uint64(uintptr(unsafe.Pointer(&buf[0]))),
			len:      uint32(len(buf)),
			userData: uint64(idx),
		}
		owed[idx] = true
	}
	// Release: the SQE writes above become visible to the kernel no later
	// than the new tail (Go atomics are sequentially consistent, which is
	// stronger than the smp_store_release liburing uses).
	atomic.StoreUint32(r.sqTail, tail+uint32(len(batch)))
	r.batches.Add(1)

	outstanding := len(batch)
	stalls := 0
	for outstanding > 0 {
		// Whatever the kernel has not consumed yet (all of it on the first
		// pass; the rest after a partial submission) is submitted again,
		// and we wait for every completion still owed to us. If a
		// submission stops early, the kernel returns without waiting.
		toSubmit := atomic.LoadUint32(r.sqTail) - atomic.LoadUint32(r.sqHead)
		_, err := r.enter(r.fd, toSubmit, uint32(outstanding), enterGetEvents)
		if err != nil && !transient(err) {
			r.fail(fmt.Errorf("%w: io_uring_enter: %w", ErrRingFailed, err), reqs, batch, owed, outstanding)
			return requeue, r.failed
		}
		reaped := 0
		requeue, reaped = r.reap(fd, reqs, requeue, owed)
		outstanding -= reaped
		if err != nil && reaped == 0 {
			if stalls++; stalls > maxStalls {
				r.fail(fmt.Errorf("%w: io_uring_enter keeps failing: %w", ErrRingFailed, err), reqs, batch, owed, outstanding)
				return requeue, r.failed
			}
			runtime.Gosched()
		} else {
			stalls = 0
		}
	}
	r.pinner.Unpin()
	runtime.KeepAlive(reqs)
	return requeue, nil
}

// transient reports whether an io_uring_enter error is worth retrying.
func transient(err error) bool {
	return err == syscall.EINTR || err == syscall.EAGAIN || err == syscall.EBUSY
}

// fail marks the ring failed (with err) in the middle of a round that still
// owes outstanding completions, and settles what the kernel still holds:
// see abandon. Only buffers the kernel is done with are unpinned.
func (r *Ring) fail(err error, reqs []Req, batch []int, owed []bool, outstanding int) {
	if n := r.abandon(reqs, batch, owed, outstanding); n > 0 {
		r.stranded = n
		err = fmt.Errorf("%w (%d reads still in flight after %v; their buffers stay pinned for good)", err, n, drainTimeout)
	} else {
		r.pinner.Unpin()
	}
	r.failed = err
}

// abandon ends a failed round with outstanding reads not reaped (owed) and
// returns how many of them may still be in flight when it gives up.
//
// Closing the ring fd does not stop reads already running, and the caller
// gets its buffers back (a Reader preads into them) as soon as the round
// returns, so the round must not return while the kernel may still write
// into them. abandon therefore (1) withdraws the SQEs the kernel never
// consumed (it reads SQEs only inside io_uring_enter, which nobody else
// calls while we hold mu, so lowering SQ tail back to SQ head un-submits
// them), (2) submits an IORING_OP_ASYNC_CANCEL for every read left (best
// effort: io_uring_enter is what failed), and (3) reaps their completions,
// polling for at most drainTimeout, since a read that is already copying
// cannot be cancelled and, with enter broken, nothing else is sure to end
// it. A read that completed meanwhile keeps its bytes (q.N); the rest of
// its range, like every unfinished range, is left to the caller.
//
// Reads still owed after that are stranded: the ring keeps their buffers
// pinned for good (fail, Close), so the Go heap never reuses that memory
// behind the kernel's back. The caller's own buffer may still receive the
// late read's bytes after ReadRanges returns; reading through a fresh
// buffer would not change that (the kernel writes to the address it was
// given), and what it writes is the same range of the same file that a
// pread redo puts there. Blocking until the kernel is done would be the
// only stronger promise, and would hang forever on a read that never ends
// (a pipe without a writer), which is worse.
func (r *Ring) abandon(reqs []Req, batch []int, owed []bool, outstanding int) int {
	head, tail := atomic.LoadUint32(r.sqHead), atomic.LoadUint32(r.sqTail)
	for t := head; t != tail; t++ {
		if idx := int(r.sqes[t&r.sqMask].userData); idx >= 0 && idx < len(owed) && owed[idx] {
			owed[idx] = false
			outstanding--
		}
	}
	atomic.StoreUint32(r.sqTail, head)
	outstanding -= r.reapAbandoned(reqs, owed)
	if outstanding <= 0 {
		return 0
	}

	// Cancel the rest: at most one per read of the round, so they fit the
	// SQ (empty now), and with the reads' own completions they fit the CQ.
	n := uint32(0)
	for _, idx := range batch {
		if owed[idx] {
			r.sqes[(head+n)&r.sqMask] = sqe{opcode: opAsyncCancel, fd: -1, addr: uint64(idx), userData: cancelTag | uint64(idx)}
			n++
		}
	}
	atomic.StoreUint32(r.sqTail, head+n)
	for range 3 {
		left := atomic.LoadUint32(r.sqTail) - atomic.LoadUint32(r.sqHead)
		if left == 0 {
			break
		}
		if _, err := r.enter(r.fd, left, 0, enterGetEvents); err != nil && !transient(err) {
			break
		}
	}
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqHead)) // withdraw cancels not taken

	deadline := time.Now().Add(drainTimeout)
	for pause := 50 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		outstanding -= r.reapAbandoned(reqs, owed)
		if outstanding <= 0 || time.Now().After(deadline) {
			return max(outstanding, 0)
		}
		// Lets the kernel flush completions it holds back (task work, CQ
		// overflow) where enter still works; the error does not matter.
		_, _ = r.enter(r.fd, 0, 0, enterGetEvents)
		time.Sleep(pause)
	}
}

// reapAbandoned consumes every completion in the CQ ring for a failed round
// and returns how many owed reads they ended. A read that returned data
// keeps it (q.N); anything else is left for the caller to redo.
func (r *Ring) reapAbandoned(reqs []Req, owed []bool) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		if c.userData&cancelTag != 0 {
			continue // a cancel's own result: the read's completion tells
		}
		idx := int(c.userData)
		if idx < 0 || idx >= len(reqs) || !owed[idx] {
			continue
		}
		owed[idx] = false
		n++
		if c.res > 0 {
			reqs[idx].N += int(c.res)
		}
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// reap consumes every completion in the CQ ring and returns how many.
func (r *Ring) reap(fd int, reqs []Req, requeue []int, owed []bool) ([]int, int) {
	head := atomic.LoadUint32(r.cqHead)
	// Acquire: the CQEs up to tail are written before the kernel's
	// smp_store_release of tail.
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		n++
		idx := int(c.userData)
		if idx < 0 || idx >= len(reqs) {
			continue // cannot happen: every round reaps all it submitted
		}
		owed[idx] = false
		q := &reqs[idx]
		switch {
		case c.res < 0:
			errno := syscall.Errno(-c.res)
			if errno == syscall.EINTR || errno == syscall.EAGAIN {
				requeue = append(requeue, idx)
				continue
			}
			q.Err = fmt.Errorf("io_uring read fd %d at %d: %w", fd, q.Off+int64(q.N), errno)
		case c.res == 0:
			q.Err = io.EOF
		default:
			q.N += int(c.res)
			if q.N < len(q.Buf) {
				r.resubmits.Add(1)
				requeue = append(requeue, idx)
			}
		}
	}
	// Release: we are done reading the CQEs before the kernel may reuse
	// their slots.
	atomic.StoreUint32(r.cqHead, head)
	return requeue, n
}
