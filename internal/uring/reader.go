package uring

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mode selects how a Reader reads: the --io-uring flag.
type Mode int

const (
	// ModeAuto uses io_uring and falls back to pread, for good and with one
	// log line, where the kernel (or a seccomp filter) refuses it.
	ModeAuto Mode = iota
	// ModeOn uses io_uring; NewReader fails where it is unavailable.
	ModeOn
	// ModeOff uses pread only.
	ModeOff
)

// ErrUnavailable is wrapped by NewReader's error in ModeOn when io_uring
// cannot be set up; the setup's errno is wrapped too.
var ErrUnavailable = errors.New("io_uring required (mode on) but unavailable")

// ParseMode parses "auto", "on" or "off".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto", "":
		return ModeAuto, nil
	case "on":
		return ModeOn, nil
	case "off":
		return ModeOff, nil
	}
	return ModeAuto, fmt.Errorf("io-uring mode %q: want auto, on or off", s)
}

// String returns the flag spelling of m.
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeOn:
		return "on"
	case ModeOff:
		return "off"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Options configures a Reader. The zero value is ModeAuto with defaults.
type Options struct {
	Mode Mode
	// Entries is each ring's submission queue size (default 256).
	Entries int
	// Rings is the most rings the Reader sets up, one per concurrent
	// ReadRanges call (default GOMAXPROCS, at most 8). Rings beyond the
	// first are set up when concurrent callers first need them.
	Rings int
	// Logger receives the one fallback line (default slog.Default()).
	Logger *slog.Logger
	// SimulateSetupError, when non-nil, makes every ring setup fail with
	// this error instead of calling io_uring_setup: tests use it to take
	// the path of a kernel or seccomp filter that refuses io_uring.
	SimulateSetupError error
}

// Stats counts a Reader's reads. Ranges count once however many SQEs or
// pread calls they took.
type Stats struct {
	UringReads   uint64 // ranges read through io_uring
	PreadReads   uint64 // ranges read with pread
	UringBatches uint64 // io_uring submission rounds (one io_uring_enter batch each)
	Fallback     bool   // ModeAuto fell back to pread
}

// Reader reads ranges of files through a small pool of io_uring rings, or
// with pread when io_uring is off or refused. It is safe for concurrent use:
// each ReadRanges call takes a ring of its own from the pool (setting up a
// new one while fewer than Options.Rings exist, waiting for one otherwise),
// so concurrent callers submit in parallel without sharing a ring's lock.
type Reader struct {
	opts Options
	log  *slog.Logger

	idle chan *Ring    // rings not in use
	done chan struct{} // closed by Close

	waiters atomic.Int32 // callers blocked in acquire (tests watch it)

	mu        sync.Mutex    // guards the fields below
	rings     []*Ring       // every ring set up
	noGrow    bool          // a later setup failed; stay at len(rings)
	dropped   chan struct{} // closed (and replaced) when a failed ring leaves the pool
	closed    bool
	fellBack  atomic.Bool
	uringRds  atomic.Uint64
	preadRds  atomic.Uint64
	closedBat uint64 // batches of rings already closed
}

// NewReader returns a Reader. In ModeAuto and ModeOn it sets up the first
// ring right away: ModeOn returns an error wrapping ErrUnavailable and the
// setup's errno when that fails; ModeAuto falls back to pread and logs why.
func NewReader(opts Options) (*Reader, error) {
	if opts.Entries == 0 {
		opts.Entries = 256
	}
	if opts.Rings <= 0 {
		opts.Rings = min(runtime.GOMAXPROCS(0), 8)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rd := &Reader{
		opts:    opts,
		log:     opts.Logger,
		idle:    make(chan *Ring, opts.Rings),
		done:    make(chan struct{}),
		dropped: make(chan struct{}),
	}
	switch opts.Mode {
	case ModeOff:
		return rd, nil
	case ModeAuto, ModeOn:
	default:
		return nil, fmt.Errorf("io_uring reader: unknown mode %v", opts.Mode)
	}
	r, err := rd.setup()
	if err != nil {
		if opts.Mode == ModeOn {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		rd.fallBack("io_uring setup failed", err)
		return rd, nil
	}
	rd.rings = append(rd.rings, r)
	rd.idle <- r
	return rd, nil
}

func (rd *Reader) setup() (*Ring, error) {
	if rd.opts.SimulateSetupError != nil {
		return nil, fmt.Errorf("io_uring_setup(%d entries): %w", rd.opts.Entries, rd.opts.SimulateSetupError)
	}
	return New(rd.opts.Entries)
}

// refused reports whether err is how a kernel without io_uring, or a
// seccomp/sysctl policy against it, answers io_uring_setup.
func refused(err error) bool {
	return errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

// fallBack switches to pread for good, logging exactly once.
func (rd *Reader) fallBack(why string, err error) {
	if !rd.fellBack.CompareAndSwap(false, true) {
		return
	}
	if refused(err) {
		why += " (refused by the kernel or a seccomp/sysctl policy)"
	}
	rd.log.Warn("io_uring unavailable, reading local files with pread", "reason", why, "err", err)
}

// Mode returns the mode the Reader was made with.
func (rd *Reader) Mode() Mode { return rd.opts.Mode }

// ReadRanges reads every range of reqs from fd (see Ring.ReadRanges for the
// per-range results) and returns the lowest-indexed range's error, or nil.
// Through io_uring, the ranges go to the kernel as one batch.
func (rd *Reader) ReadRanges(fd int, reqs []Req) error {
	if rd.opts.Mode == ModeOff || rd.fellBack.Load() {
		return rd.pread(fd, reqs)
	}
	r, err := rd.acquire()
	if err == errFellBack {
		return rd.pread(fd, reqs)
	}
	if err != nil {
		for i := range reqs {
			reqs[i].N, reqs[i].Err = 0, err
		}
		return err
	}
	err = r.ReadRanges(fd, reqs)
	rd.uringRds.Add(uint64(len(reqs)))
	// Ask the ring rather than err: err is the lowest range's error, which
	// may be another range's io.EOF.
	failure, stranded := r.failure()
	if stranded > 0 {
		rd.log.Warn("io_uring ring failed with reads still in flight; keeping their buffers pinned for good",
			"reads", stranded, "err", failure)
	}
	if failure != nil && rd.opts.Mode == ModeAuto {
		// Before release drops the ring and wakes the callers waiting for
		// one, so that they find the fallback rather than set up a ring.
		rd.fallBack("io_uring ring failed", failure)
	}
	rd.release(r)
	if failure == nil || rd.opts.Mode == ModeOn {
		return err
	}
	// The ring broke under us (not a setup refusal, but the same promise:
	// never fail a read that pread can do). Redo what it did not finish,
	// into the caller's buffers even where a read was stranded (see
	// Ring.abandon: its late write, if any, is these same bytes).
	var redo []int
	for i := range reqs {
		if errors.Is(reqs[i].Err, ErrRingFailed) {
			redo = append(redo, i)
		}
	}
	for _, i := range redo {
		q := &reqs[i]
		var n int
		n, q.Err = preadFull(fd, q.Buf[q.N:], q.Off+int64(q.N))
		q.N += n
	}
	rd.preadRds.Add(uint64(len(redo)))
	return firstError(reqs)
}

// ReadAt reads len(p) bytes at off with io.ReaderAt semantics, through the
// same path as ReadRanges.
func (rd *Reader) ReadAt(fd int, p []byte, off int64) (int, error) {
	reqs := [1]Req{{Off: off, Buf: p}}
	_ = rd.ReadRanges(fd, reqs[:]) // the range carries the result
	return reqs[0].N, reqs[0].Err
}

// errFellBack is acquire's answer once ModeAuto has fallen back to pread.
var errFellBack = errors.New("io_uring: fell back to pread")

// acquire takes an idle ring, sets up a new one while the pool has room, or
// waits for one to be released. A wait also ends when a failed ring leaves
// the pool: the caller then looks again, and finds the pread fallback
// (errFellBack, ModeAuto), room for a fresh ring, or — no ring left and
// none can be set up — an error wrapping ErrUnavailable (ModeOn).
func (rd *Reader) acquire() (*Ring, error) {
	for {
		select {
		case r := <-rd.idle:
			return r, nil
		default:
		}
		rd.mu.Lock()
		if rd.closed {
			rd.mu.Unlock()
			return nil, ErrClosed
		}
		if rd.fellBack.Load() {
			rd.mu.Unlock()
			return nil, errFellBack
		}
		if len(rd.rings) == 0 || (!rd.noGrow && len(rd.rings) < rd.opts.Rings) {
			r, err := rd.setup()
			if err == nil {
				rd.rings = append(rd.rings, r)
				rd.mu.Unlock()
				return r, nil
			}
			if len(rd.rings) == 0 {
				// Failed rings took the pool with them: there is nothing
				// to wait for.
				rd.mu.Unlock()
				if rd.opts.Mode == ModeAuto {
					rd.fallBack("io_uring setup failed after a ring failed", err)
					return nil, errFellBack
				}
				return nil, fmt.Errorf("%w: replacing a failed ring: %w", ErrUnavailable, err)
			}
			// The first ring worked, so this is a resource limit rather
			// than a refusal: make do with the rings there are.
			rd.noGrow = true
			rd.log.Debug("io_uring: not setting up more rings", "rings", len(rd.rings), "err", err)
		}
		dropped := rd.dropped
		rd.mu.Unlock()
		rd.waiters.Add(1)
		select {
		case r := <-rd.idle:
			rd.waiters.Add(-1)
			return r, nil
		case <-dropped:
			rd.waiters.Add(-1) // look again
		case <-rd.done:
			rd.waiters.Add(-1)
			return nil, ErrClosed
		}
	}
}

// release returns r to the pool, or, if it failed, closes it, makes room for
// a fresh one and wakes the callers waiting in acquire (unless Close is
// waiting for it).
func (rd *Reader) release(r *Ring) {
	if r.Failed() {
		rd.mu.Lock()
		if !rd.closed {
			for i, x := range rd.rings {
				if x == r {
					rd.rings = append(rd.rings[:i], rd.rings[i+1:]...)
					break
				}
			}
			rd.closedBat += r.Batches()
			// Closed before anyone is woken, so that its resources (the
			// memlock a setup may have run out of) are given back first;
			// and the setup that failed may work now.
			_ = r.Close()
			rd.noGrow = false
			close(rd.dropped)
			rd.dropped = make(chan struct{})
			rd.mu.Unlock()
			return
		}
		rd.mu.Unlock()
	}
	rd.idle <- r
}

// Stats returns the Reader's counters.
func (rd *Reader) Stats() Stats {
	rd.mu.Lock()
	batches := rd.closedBat
	for _, r := range rd.rings {
		batches += r.Batches()
	}
	rd.mu.Unlock()
	return Stats{
		UringReads:   rd.uringRds.Load(),
		PreadReads:   rd.preadRds.Load(),
		UringBatches: batches,
		Fallback:     rd.fellBack.Load(),
	}
}

// Close waits for reads in progress to finish and releases the rings.
// Reads after Close fail with ErrClosed (or, in pread mode, still work:
// pread needs nothing that Close releases).
func (rd *Reader) Close() error {
	rd.mu.Lock()
	if rd.closed {
		rd.mu.Unlock()
		return nil
	}
	rd.closed = true
	close(rd.done)
	rings := rd.rings
	rd.mu.Unlock()

	var errs []error
	for range rings {
		r := <-rd.idle // wait for the ring's current user, if any
		rd.mu.Lock()
		rd.closedBat += r.Batches()
		rd.mu.Unlock()
		errs = append(errs, r.Close())
	}
	rd.mu.Lock()
	rd.rings = nil
	rd.mu.Unlock()
	return errors.Join(errs...)
}

// pread reads every range with pread(2).
func (rd *Reader) pread(fd int, reqs []Req) error {
	for i := range reqs {
		q := &reqs[i]
		q.N, q.Err = 0, nil
		if q.Off < 0 {
			q.Err = fmt.Errorf("read fd %d at %d: negative offset: %w", fd, q.Off, syscall.EINVAL)
			continue
		}
		q.N, q.Err = preadFull(fd, q.Buf, q.Off)
	}
	rd.preadRds.Add(uint64(len(reqs)))
	return firstError(reqs)
}

// preadFull reads len(buf) bytes at off unless the file ends first (io.EOF)
// or a read fails.
func preadFull(fd int, buf []byte, off int64) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(fd, buf[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("pread fd %d at %d: %w", fd, off+int64(n), err)
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}
