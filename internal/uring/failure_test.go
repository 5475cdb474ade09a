package uring

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zenithfs/zenithfs/internal/testlog"
)

// waitFor polls cond until it holds, failing the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// failOnCue makes r's next io_uring_enter block until the returned function
// is called and then fail with EFAULT without submitting anything, as a ring
// that broke mid-round does; later calls fail at once. entered is closed
// when the first call arrives.
func failOnCue(r *Ring) (entered <-chan struct{}, fail func()) {
	in, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.enter = func(int, uint32, uint32, uint32) (int, error) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(in)
			<-proceed
		}
		return 0, syscall.EFAULT
	}
	return in, func() { close(proceed) }
}

type readResult struct {
	reqs []Req
	err  error
}

// readAsync reads two ranges of fd through rd on a new goroutine.
func readAsync(rd *Reader, fd int) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		reqs := []Req{{Off: 100, Buf: make([]byte, 1000)}, {Off: 5000, Buf: make([]byte, 300)}}
		err := rd.ReadRanges(fd, reqs)
		ch <- readResult{reqs, err}
	}()
	return ch
}

func awaitRead(t *testing.T, who string, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still blocked 5s after the only ring failed", who)
		panic("unreachable")
	}
}

// TestReaderWaiterWokenWhenOnlyRingFails: with one ring, caller A's round
// fails while caller B waits for the ring. The failed ring leaves the pool;
// B must wake and read through pread (auto) or a fresh ring (on) rather than
// wait for a ring that will never come back.
func TestReaderWaiterWokenWhenOnlyRingFails(t *testing.T) {
	for _, mode := range []Mode{ModeAuto, ModeOn} {
		t.Run(mode.String(), func(t *testing.T) {
			log, _ := testlog.New(slog.LevelWarn)
			rd, err := NewReader(Options{Mode: mode, Rings: 1, Entries: 8, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			data, fd := testFile(t, 64<<10, 31)
			failed := rd.rings[0]
			entered, fail := failOnCue(failed)

			a := readAsync(rd, fd)
			<-entered // A holds the only ring, inside its round
			b := readAsync(rd, fd)
			waitFor(t, "B to wait for the ring", func() bool { return rd.waiters.Load() == 1 })
			fail()

			resA := awaitRead(t, "A", a)
			resB := awaitRead(t, "B", b)
			if mode == ModeAuto {
				if resA.err != nil {
					t.Fatalf("A: %v, want the pread redo to succeed", resA.err)
				}
				checkReqs(t, data, resA.reqs)
			} else if !errors.Is(resA.err, ErrRingFailed) {
				t.Fatalf("A: %v, want ErrRingFailed", resA.err)
			}
			if resB.err != nil {
				t.Fatalf("B: %v", resB.err)
			}
			checkReqs(t, data, resB.reqs)

			st := rd.Stats()
			rd.mu.Lock()
			rings := slices.Clone(rd.rings)
			rd.mu.Unlock()
			if slices.Contains(rings, failed) {
				t.Fatal("the failed ring is still in the pool")
			}
			switch mode {
			case ModeAuto: // B took the fallback
				if !st.Fallback || st.PreadReads != 4 || st.UringReads != 2 {
					t.Fatalf("stats %+v: want A's 2 ranges redone and B's 2 read with pread", st)
				}
			case ModeOn: // B set up a fresh ring
				if st.Fallback || st.PreadReads != 0 || st.UringReads != 4 || len(rings) != 1 {
					t.Fatalf("stats %+v, %d rings: want B on a fresh ring", st, len(rings))
				}
			}
		})
	}
}

// TestReaderOnFailedRingsDoNotEmptyThePool: in ModeOn, a setup that failed
// (memlock) stopped the pool from growing. When its only ring then fails,
// the waiter must not block for good: it tries to set up a ring, gets a
// clear error while that fails, and a later read gets a fresh ring.
func TestReaderOnFailedRingsDoNotEmptyThePool(t *testing.T) {
	rd, err := NewReader(Options{Mode: ModeOn, Rings: 2, Entries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	data, fd := testFile(t, 64<<10, 32)
	rd.opts.SimulateSetupError = syscall.ENOMEM // no second ring, for now
	entered, fail := failOnCue(rd.rings[0])

	a := readAsync(rd, fd)
	<-entered
	b := readAsync(rd, fd) // cannot grow the pool: waits
	waitFor(t, "B to wait for the ring", func() bool { return rd.waiters.Load() == 1 })
	fail()
	if res := awaitRead(t, "A", a); !errors.Is(res.err, ErrRingFailed) {
		t.Fatalf("A: %v, want ErrRingFailed", res.err)
	}
	res := awaitRead(t, "B", b)
	if !errors.Is(res.err, ErrUnavailable) || !errors.Is(res.err, syscall.ENOMEM) {
		t.Fatalf("B: %v, want ErrUnavailable wrapping ENOMEM", res.err)
	}
	for i, q := range res.reqs {
		if !errors.Is(q.Err, ErrUnavailable) {
			t.Fatalf("B's range %d: %v, want ErrUnavailable", i, q.Err)
		}
	}

	rd.opts.SimulateSetupError = nil // the memlock is back
	res = <-readAsync(rd, fd)
	if res.err != nil {
		t.Fatalf("read once rings can be set up again: %v", res.err)
	}
	checkReqs(t, data, res.reqs)
	if st := rd.Stats(); st.Fallback || st.PreadReads != 0 {
		t.Fatalf("stats %+v: ModeOn must not fall back", st)
	}
}

// blockingPipe returns a pipe whose read end blocks (os.Pipe's does not: Go
// sets O_NONBLOCK, and io_uring then fails an empty read with EAGAIN rather
// than wait), so an io_uring read of it stays in flight until written to.
func blockingPipe(t *testing.T) (rfd, wfd int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(p[0])
		unix.Close(p[1])
	})
	return p[0], p[1]
}

// submitThenFail makes r's first io_uring_enter submit its SQEs without
// waiting for them and then report a ring failure (EFAULT), leaving the
// reads in flight. Later calls go to the kernel if working is true, and
// fail with EFAULT otherwise (a ring whose enter stays broken).
func submitThenFail(t *testing.T, r *Ring, working bool) {
	calls := 0
	r.enter = func(fd int, toSubmit, minComplete, flags uint32) (int, error) {
		calls++
		switch {
		case calls == 1:
			if n, err := sysEnter(fd, toSubmit, 0, flags); err != nil || n != int(toSubmit) {
				t.Errorf("submitting: %d of %d, %v", n, toSubmit, err)
			}
			return 0, syscall.EFAULT
		case working:
			return sysEnter(fd, toSubmit, minComplete, flags)
		}
		return 0, syscall.EFAULT
	}
}

// TestRingFailureCancelsReadsInFlight: a round fails while its read of an
// empty pipe is in flight. ReadRanges must not return, handing the buffer
// back, before the kernel is done with it: here the read is cancelled, so
// what is written to the pipe afterwards stays there instead of landing in
// the returned buffer.
func TestRingFailureCancelsReadsInFlight(t *testing.T) {
	r := newRing(t, 4)
	rfd, wfd := blockingPipe(t)
	submitThenFail(t, r, true)
	reqs := []Req{{Buf: make([]byte, 5)}}
	err := r.ReadRanges(rfd, reqs)
	if !errors.Is(err, ErrRingFailed) || !errors.Is(reqs[0].Err, ErrRingFailed) {
		t.Fatalf("got %v (range: %v), want ErrRingFailed", err, reqs[0].Err)
	}
	if _, stranded := r.failure(); stranded != 0 {
		t.Fatalf("%d reads left in flight, want the read cancelled and reaped", stranded)
	}
	if _, err := unix.Write(wfd, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // time for a read still in flight to take it
	if reqs[0].N != 0 || !bytes.Equal(reqs[0].Buf, make([]byte, 5)) {
		t.Fatalf("the kernel wrote %q into the buffer after ReadRanges returned", reqs[0].Buf)
	}
	if err := unix.SetNonblock(rfd, true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := unix.Read(rfd, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("pipe after the failed round: %q, %v; want hello still there", buf[:n], err)
	}
}

// shortDrain shortens the wait for completions of a failed round.
func shortDrain(t *testing.T) {
	old := drainTimeout
	drainTimeout = 50 * time.Millisecond
	t.Cleanup(func() { drainTimeout = old })
}

func isStranded(r *Ring) bool {
	strandedRings.Lock()
	defer strandedRings.Unlock()
	return slices.Contains(strandedRings.rings, r)
}

// TestRingFailureStrandsReadsItCannotCancel: when enter stays broken, the
// read in flight can be neither cancelled nor reaped. The round gives up
// after drainTimeout, says so, and the ring keeps the buffer pinned, and
// itself reachable, even after Close.
func TestRingFailureStrandsReadsItCannotCancel(t *testing.T) {
	shortDrain(t)
	r := newRing(t, 4)
	rfd, wfd := blockingPipe(t)
	submitThenFail(t, r, false)
	reqs := []Req{{Buf: make([]byte, 5)}}
	start := time.Now()
	err := r.ReadRanges(rfd, reqs)
	if !errors.Is(err, ErrRingFailed) || !strings.Contains(err.Error(), "still in flight") {
		t.Fatalf("got %v, want ErrRingFailed saying reads are still in flight", err)
	}
	if d := time.Since(start); d < drainTimeout {
		t.Errorf("gave up after %v, before drainTimeout (%v)", d, drainTimeout)
	}
	if _, stranded := r.failure(); stranded != 1 {
		t.Fatalf("%d reads left in flight, want 1", stranded)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !isStranded(r) {
		t.Fatal("Close let go of a ring whose buffers the kernel may still write")
	}
	// Whatever the kernel does with the read now (cancel it as the ring
	// goes away, or complete it) lands in memory that stays pinned.
	_, _ = unix.Write(wfd, []byte("hello"))
}

// TestReaderStrandedReadsLogged: through a Reader in ModeAuto, a ring that
// fails with a read it cannot get back is logged, kept (not unpinned) once
// dropped from the pool, and the range is redone with pread.
func TestReaderStrandedReadsLogged(t *testing.T) {
	shortDrain(t)
	log, logs := testlog.New(slog.LevelWarn)
	rd, err := NewReader(Options{Mode: ModeAuto, Rings: 1, Entries: 4, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	r := rd.rings[0]
	rfd, wfd := blockingPipe(t)
	submitThenFail(t, r, false)
	reqs := []Req{{Buf: make([]byte, 5)}}
	err = rd.ReadRanges(rfd, reqs)
	// The pread redo of a pipe fails with ESPIPE: proof it was tried.
	if !errors.Is(err, syscall.ESPIPE) || !errors.Is(reqs[0].Err, syscall.ESPIPE) {
		t.Fatalf("got %v (range: %v), want the pread redo's ESPIPE", err, reqs[0].Err)
	}
	if !isStranded(r) {
		t.Fatal("the dropped ring was let go of with a read in flight")
	}
	lines := logs.Lines()
	if len(lines) != 2 || !strings.Contains(logs.String(), "still in flight") || !strings.Contains(logs.String(), "ring failed") {
		t.Fatalf("want one line about the read left in flight and one about the fallback, got %q", lines)
	}
	if st := rd.Stats(); !st.Fallback {
		t.Fatalf("stats %+v: want the fallback", st)
	}
	_, _ = unix.Write(wfd, []byte("hello"))
}
