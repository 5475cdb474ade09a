package uring

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// testFile writes size pseudo-random bytes to a new file and returns its
// contents and an open fd (closed at cleanup).
func testFile(t testing.TB, size int, seed uint64) ([]byte, int) {
	t.Helper()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return data, int(f.Fd())
}

// randomReqs returns count ranges over a file of size bytes, some of them
// crossing or starting past the end.
func randomReqs(rng *rand.Rand, size, count int) []Req {
	reqs := make([]Req, count)
	for i := range reqs {
		off := rng.IntN(size + 1 + size/8 + 64)
		n := rng.IntN(64 << 10)
		if rng.IntN(4) == 0 {
			n = rng.IntN(64)
		}
		reqs[i] = Req{Off: int64(off), Buf: make([]byte, n)}
	}
	return reqs
}

// want is what io.ReaderAt on data returns for the range.
func want(data []byte, off int64, n int) ([]byte, error) {
	if off >= int64(len(data)) {
		if n == 0 {
			return nil, nil
		}
		return nil, io.EOF
	}
	end := off + int64(n)
	if end > int64(len(data)) {
		return data[off:], io.EOF
	}
	return data[off:end], nil
}

// checkReqs compares every range with the file's contents.
func checkReqs(t *testing.T, data []byte, reqs []Req) {
	t.Helper()
	for i, q := range reqs {
		w, werr := want(data, q.Off, len(q.Buf))
		if q.N != len(w) || !bytes.Equal(q.Buf[:q.N], w) {
			t.Fatalf("range %d (off %d len %d): got %d bytes, want %d (or contents differ)", i, q.Off, len(q.Buf), q.N, len(w))
		}
		if q.Err != werr {
			t.Fatalf("range %d (off %d len %d): err %v, want %v", i, q.Off, len(q.Buf), q.Err, werr)
		}
	}
}

func newRing(t testing.TB, entries int) *Ring {
	t.Helper()
	r, err := New(entries)
	if err != nil {
		t.Fatalf("io_uring setup failed; this kernel is expected to support it: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRingReadRangesMatchesPread(t *testing.T) {
	r := newRing(t, 16)
	preader, err := NewReader(Options{Mode: ModeOff})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 17, 4096, 300_001, 2 << 20} {
		data, fd := testFile(t, size, uint64(size))
		reqs := randomReqs(rng, size, 300) // far more than the 16-entry ring
		before := r.Batches()
		err := r.ReadRanges(fd, reqs)
		checkReqs(t, data, reqs)

		// pread gives the same bytes and the same first error.
		preqs := make([]Req, len(reqs))
		for i, q := range reqs {
			preqs[i] = Req{Off: q.Off, Buf: make([]byte, len(q.Buf))}
		}
		perr := preader.ReadRanges(fd, preqs)
		for i := range reqs {
			if reqs[i].N != preqs[i].N || !bytes.Equal(reqs[i].Buf, preqs[i].Buf) || reqs[i].Err != preqs[i].Err {
				t.Fatalf("size %d range %d: uring (%d, %v) differs from pread (%d, %v)", size, i, reqs[i].N, reqs[i].Err, preqs[i].N, preqs[i].Err)
			}
		}
		if (err == nil) != (perr == nil) || (err != nil && errors.Is(err, io.EOF) != errors.Is(perr, io.EOF)) {
			t.Fatalf("size %d: uring error %v, pread error %v", size, err, perr)
		}
		if size > 0 {
			if got := r.Batches() - before; got < uint64(300/r.Entries()) {
				t.Errorf("size %d: %d rounds for 300 ranges on a %d-entry ring", size, got, r.Entries())
			}
		}
	}
}

func TestRingEOF(t *testing.T) {
	r := newRing(t, 8)
	data, fd := testFile(t, 1000, 3)
	tests := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
	}{
		{"inside", 10, 100, 100, nil},
		{"ends at EOF", 900, 100, 100, nil},
		{"crosses EOF", 950, 100, 50, io.EOF},
		{"starts at EOF", 1000, 10, 0, io.EOF},
		{"past EOF", 5000, 10, 0, io.EOF},
		{"empty", 10, 0, 0, nil},
		{"empty past EOF", 5000, 0, 0, nil},
		{"whole file and more", 0, 4096, 1000, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reqs := []Req{{Off: tc.off, Buf: make([]byte, tc.n)}}
			err := r.ReadRanges(fd, reqs)
			q := reqs[0]
			if q.N != tc.wantN || q.Err != tc.wantErr {
				t.Fatalf("got (%d, %v), want (%d, %v)", q.N, q.Err, tc.wantN, tc.wantErr)
			}
			if w, _ := want(data, tc.off, tc.n); !bytes.Equal(q.Buf[:q.N], w) {
				t.Fatal("contents differ")
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("ReadRanges returned %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRingNegativeOffset(t *testing.T) {
	r := newRing(t, 8)
	_, fd := testFile(t, 100, 4)
	reqs := []Req{{Off: 0, Buf: make([]byte, 10)}, {Off: -1, Buf: make([]byte, 10)}}
	err := r.ReadRanges(fd, reqs)
	if !errors.Is(err, syscall.EINVAL) || !errors.Is(reqs[1].Err, syscall.EINVAL) {
		t.Fatalf("negative offset: got %v / %v, want EINVAL", err, reqs[1].Err)
	}
	if reqs[0].N != 10 || reqs[0].Err != nil {
		t.Fatalf("valid range beside it: (%d, %v)", reqs[0].N, reqs[0].Err)
	}
}

// TestRingShortReadResubmitted reads from a pipe, where each read returns
// only what the writer has written so far: the ring must resubmit the rest
// of the range until it is full, and report io.EOF when the writer closes.
func TestRingShortReadResubmitted(t *testing.T) {
	r := newRing(t, 4)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	go func() {
		defer pw.Close()
		for i := 0; i < len(payload); i += 512 {
			pw.Write(payload[i : i+512])
			time.Sleep(5 * time.Millisecond)
		}
	}()
	reqs := []Req{{Off: 0, Buf: make([]byte, len(payload))}, {Off: 0, Buf: make([]byte, 100)}}
	// Pipes have no offsets, so the two ranges race for the bytes;
	// read them one after the other instead.
	if err := r.ReadRanges(int(pr.Fd()), reqs[:1]); err != nil {
		t.Fatalf("full range: %v", err)
	}
	if !bytes.Equal(reqs[0].Buf, payload) {
		t.Fatal("pipe contents differ")
	}
	if r.resubmits.Load() == 0 {
		t.Fatal("no short read was resubmitted")
	}
	err = r.ReadRanges(int(pr.Fd()), reqs[1:])
	if !errors.Is(err, io.EOF) || reqs[1].N != 0 || reqs[1].Err != io.EOF {
		t.Fatalf("after the writer closed: (%d, %v, %v), want (0, EOF)", reqs[1].N, reqs[1].Err, err)
	}
}

func TestRingBadFD(t *testing.T) {
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	r := newRing(t, 8)
	preader, err := NewReader(Options{Mode: ModeOff})
	if err != nil {
		t.Fatal(err)
	}
	// Opened after the ring, so that the fd number is not reused by it.
	closed, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	closedFD := int(closed.Fd())
	closed.Close()
	tests := []struct {
		name string
		fd   int
		want syscall.Errno
	}{
		{"negative", -1, syscall.EBADF},
		{"closed", closedFD, syscall.EBADF},
		{"directory", int(dir.Fd()), syscall.EISDIR},
	}
	for _, tc := range tests {
		for _, path := range []struct {
			name string
			read func(int, []Req) error
		}{{"uring", r.ReadRanges}, {"pread", preader.ReadRanges}} {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				reqs := []Req{{Off: 0, Buf: make([]byte, 10)}, {Off: 100, Buf: make([]byte, 10)}}
				err := path.read(tc.fd, reqs)
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				for i, q := range reqs {
					if !errors.Is(q.Err, tc.want) {
						t.Fatalf("range %d: got %v, want %v", i, q.Err, tc.want)
					}
				}
			})
		}
	}
	// The ring is still usable after failed reads.
	data, fd := testFile(t, 100, 5)
	reqs := []Req{{Off: 0, Buf: make([]byte, 100)}}
	if err := r.ReadRanges(fd, reqs); err != nil || !bytes.Equal(reqs[0].Buf, data) {
		t.Fatalf("read after errors: %v", err)
	}
}

func TestNewRejectsBadSizes(t *testing.T) {
	for _, n := range []int{0, -1, maxEntries + 1} {
		if _, err := New(n); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("New(%d): %v, want EINVAL", n, err)
		}
	}
}

func TestRingClosed(t *testing.T) {
	r, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, fd := testFile(t, 10, 6)
	if err := r.ReadRanges(fd, []Req{{Buf: make([]byte, 4)}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}
}
