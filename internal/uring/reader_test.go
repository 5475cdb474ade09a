package uring

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zenithfs/zenithfs/internal/testlog"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"auto", ModeAuto, false},
		{"on", ModeOn, false},
		{"off", ModeOff, false},
		{"", ModeAuto, false},
		{"yes", ModeAuto, true},
	}
	for _, tc := range tests {
		got, err := ParseMode(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseMode(%q) = %v, %v", tc.in, got, err)
		}
		if err == nil && tc.in != "" && got.String() != tc.in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

// TestReaderModes reads the same ranges through every mode and checks both
// the bytes and which path the counters say they took.
func TestReaderModes(t *testing.T) {
	tests := []struct {
		name         string
		opts         Options
		wantFallback bool
		wantUring    bool
		wantLogLines int
	}{
		{"auto", Options{Mode: ModeAuto}, false, true, 0},
		{"on", Options{Mode: ModeOn}, false, true, 0},
		{"off", Options{Mode: ModeOff}, false, false, 0},
		{"auto refused EPERM", Options{Mode: ModeAuto, SimulateSetupError: syscall.EPERM}, true, false, 1},
		{"auto refused ENOSYS", Options{Mode: ModeAuto, SimulateSetupError: syscall.ENOSYS}, true, false, 1},
		{"auto refused EACCES", Options{Mode: ModeAuto, SimulateSetupError: syscall.EACCES}, true, false, 1},
	}
	data, fd := testFile(t, 1<<20, 11)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := testlog.New(slog.LevelWarn)
			tc.opts.Logger = log
			tc.opts.Entries = 32
			rd, err := NewReader(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			rng := rand.New(rand.NewPCG(3, 4))
			const calls, perCall = 5, 100
			for range calls {
				reqs := randomReqs(rng, len(data), perCall)
				_ = rd.ReadRanges(fd, reqs)
				checkReqs(t, data, reqs)
			}
			buf := make([]byte, 10)
			if n, err := rd.ReadAt(fd, buf, 5); n != 10 || err != nil || !bytes.Equal(buf, data[5:15]) {
				t.Fatalf("ReadAt: %d, %v", n, err)
			}
			st := rd.Stats()
			const total = calls*perCall + 1
			if st.Fallback != tc.wantFallback {
				t.Errorf("Fallback = %v, want %v", st.Fallback, tc.wantFallback)
			}
			if tc.wantUring {
				if st.UringReads != total || st.PreadReads != 0 || st.UringBatches < calls*perCall/32 {
					t.Errorf("stats %+v: want %d io_uring reads in >= %d batches, no pread", st, total, calls*perCall/32)
				}
			} else if st.PreadReads != total || st.UringReads != 0 || st.UringBatches != 0 {
				t.Errorf("stats %+v: want %d pread reads, no io_uring", st, total)
			}
			lines := logs.Lines()
			if len(lines) != tc.wantLogLines {
				t.Fatalf("%d log lines, want %d: %q", len(lines), tc.wantLogLines, lines)
			}
			if tc.wantLogLines > 0 && !strings.Contains(lines[0], "pread") {
				t.Errorf("log line does not say what happened: %s", lines[0])
			}
		})
	}
}

func TestReaderOnModeRefused(t *testing.T) {
	log, logs := testlog.New(slog.LevelWarn)
	rd, err := NewReader(Options{Mode: ModeOn, SimulateSetupError: syscall.EPERM, Logger: log})
	if err == nil {
		rd.Close()
		t.Fatal("NewReader in ModeOn succeeded although setup was refused")
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.EPERM) {
		t.Fatalf("error %v should wrap ErrUnavailable and EPERM", err)
	}
	if !strings.Contains(err.Error(), "mode on") {
		t.Errorf("error %q does not name the setting", err)
	}
	if l := logs.Lines(); len(l) != 0 {
		t.Errorf("ModeOn logged instead of failing: %q", l)
	}
}

// TestReaderConcurrent reads from many goroutines through a pool smaller
// than their number; -race checks the ring and pool bookkeeping.
func TestReaderConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"uring", Options{Mode: ModeOn, Entries: 16, Rings: 3}},
		{"fallback", Options{Mode: ModeAuto, SimulateSetupError: syscall.ENOSYS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := testlog.New(slog.LevelWarn)
			tc.opts.Logger = log
			rd, err := NewReader(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			data, fd := testFile(t, 512<<10, 12)
			const goroutines, iters, perCall = 16, 10, 40
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 9))
					for range iters {
						reqs := randomReqs(rng, len(data), perCall)
						_ = rd.ReadRanges(fd, reqs)
						for i, q := range reqs {
							w, werr := want(data, q.Off, len(q.Buf))
							if q.N != len(w) || !bytes.Equal(q.Buf[:q.N], w) || q.Err != werr {
								errs <- errors.New("range mismatch")
								_ = i
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			st := rd.Stats()
			const total = goroutines * iters * perCall
			if tc.opts.SimulateSetupError == nil {
				if st.UringReads != total || st.PreadReads != 0 {
					t.Fatalf("stats %+v, want %d io_uring reads", st, total)
				}
				rd.mu.Lock()
				n := len(rd.rings)
				rd.mu.Unlock()
				if n < 1 || n > 3 {
					t.Fatalf("%d rings, want 1..3", n)
				}
			} else {
				if st.PreadReads != total || !st.Fallback {
					t.Fatalf("stats %+v, want %d pread reads after fallback", st, total)
				}
				if l := logs.Lines(); len(l) != 1 {
					t.Fatalf("%d log lines, want exactly 1: %q", len(l), l)
				}
			}
		})
	}
}

func TestReaderClose(t *testing.T) {
	rd, err := NewReader(Options{Mode: ModeOn})
	if err != nil {
		t.Fatal(err)
	}
	data, fd := testFile(t, 100, 13)
	reqs := []Req{{Buf: make([]byte, 100)}}
	if err := rd.ReadRanges(fd, reqs); err != nil || !bytes.Equal(reqs[0].Buf, data) {
		t.Fatalf("read: %v", err)
	}
	before := rd.Stats()
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rd.ReadRanges(fd, reqs); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}
	if after := rd.Stats(); after.UringBatches != before.UringBatches {
		t.Errorf("batches went from %d to %d across Close", before.UringBatches, after.UringBatches)
	}
}

// TestReaderAutoFallsBackWhenRingFails breaks a working ring (its fd is
// closed behind its back, so io_uring_enter fails with EBADF): ModeAuto
// must still return the right bytes, through pread, and log once.
func TestReaderAutoFallsBackWhenRingFails(t *testing.T) {
	log, logs := testlog.New(slog.LevelWarn)
	rd, err := NewReader(Options{Mode: ModeAuto, Rings: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	r := rd.rings[0]
	if err := unix.Close(r.fd); err != nil {
		t.Fatal(err)
	}
	r.fd = -1

	data, fd := testFile(t, 64<<10, 14)
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3 {
		reqs := randomReqs(rng, len(data), 50)
		_ = rd.ReadRanges(fd, reqs)
		checkReqs(t, data, reqs)
	}
	st := rd.Stats()
	if !st.Fallback || st.PreadReads != 150 {
		t.Fatalf("stats %+v: want fallback with every range read by pread", st)
	}
	if l := logs.Lines(); len(l) != 1 || !strings.Contains(l[0], "ring failed") {
		t.Fatalf("want exactly one log line about the failed ring, got %q", l)
	}
}

// TestReaderOnReplacesFailedRing breaks a ring in ModeOn: the read that hit
// it fails with ErrRingFailed, and the next read gets a fresh ring.
func TestReaderOnReplacesFailedRing(t *testing.T) {
	rd, err := NewReader(Options{Mode: ModeOn, Rings: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	r := rd.rings[0]
	if err := unix.Close(r.fd); err != nil {
		t.Fatal(err)
	}
	r.fd = -1

	data, fd := testFile(t, 4096, 15)
	reqs := []Req{{Off: 0, Buf: make([]byte, 100)}}
	if err := rd.ReadRanges(fd, reqs); !errors.Is(err, ErrRingFailed) || !errors.Is(reqs[0].Err, syscall.EBADF) {
		t.Fatalf("read on the broken ring: %v (range: %v), want ErrRingFailed wrapping EBADF", err, reqs[0].Err)
	}
	if err := rd.ReadRanges(fd, reqs); err != nil || !bytes.Equal(reqs[0].Buf, data[:100]) {
		t.Fatalf("read after the broken ring was replaced: %v", err)
	}
	if st := rd.Stats(); st.Fallback || st.PreadReads != 0 || st.UringReads != 2 {
		t.Fatalf("stats %+v: ModeOn must not fall back", st)
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if len(rd.rings) != 1 || rd.rings[0] == r {
		t.Fatalf("rings %v: want one fresh ring", rd.rings)
	}
}
