// Package blob is one batch file's bytes as the cache holds them: a Go
// byte slice, or a sealed memfd that the kernel can read by itself (FUSE
// passthrough), so that serving a cached batch costs the daemon no copy.
//
// A memfd lives as long as its Blob is reachable: nothing closes it while a
// cache entry, a pending prefetch or an open file handle still holds the
// Blob (the os.File's cleanup closes it afterwards). Its memory is outside
// the Go heap, so the garbage collector would not run for its sake; Memfds
// counts the bytes of live memfds and collects garbage when they pass a
// limit, which keeps them within the cache's budget.
package blob

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Blob is an immutable batch file.
type Blob struct {
	b []byte   // in memory; nil for a memfd
	f *os.File // sealed memfd; nil in memory
	n int64
}

// Bytes wraps b, which must not be modified afterwards.
func Bytes(b []byte) *Blob { return &Blob{b: b, n: int64(len(b))} }

// Len is the file's size.
func (x *Blob) Len() int64 { return x.n }

// File is the sealed memfd holding the bytes, or nil for an in-memory blob.
// The caller must keep x reachable while it uses the file.
func (x *Blob) File() *os.File { return x.f }

// ReadAt reads like io.ReaderAt.
func (x *Blob) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blob: negative offset %d", off)
	}
	if x.f != nil {
		n, err := x.f.ReadAt(p, off)
		runtime.KeepAlive(x)
		return n, err
	}
	if off >= x.n {
		return 0, io.EOF
	}
	n := copy(p, x.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Slice returns bytes [off, off+n) (fewer at the end of the file) without
// copying when the blob is in memory; a memfd's bytes are read into buf,
// which must hold n bytes.
func (x *Blob) Slice(buf []byte, off int64, n int) ([]byte, error) {
	if off >= x.n || n <= 0 {
		return nil, nil
	}
	end := min(off+int64(n), x.n)
	if x.f == nil {
		return x.b[off:end], nil
	}
	m, err := x.ReadAt(buf[:end-off], off)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("blob: read memfd: %w", err)
	}
	return buf[:m], nil
}

// Data returns all the bytes: the slice itself when in memory, a copy read
// from a memfd otherwise.
func (x *Blob) Data() ([]byte, error) {
	if x.f == nil {
		return x.b, nil
	}
	buf := make([]byte, x.n)
	if _, err := x.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("blob: read memfd: %w", err)
	}
	return buf, nil
}

// Memfds makes memfd blobs and keeps the memory of those no longer
// reachable from piling up (see the package doc).
type Memfds struct {
	limit    atomic.Int64
	maxFiles int64 // at most this many memfds at once (0: no cap)
	files    atomic.Int64
	onLive   func(live int64)
	live     atomic.Int64
	peak     atomic.Int64
	largest  atomic.Int64 // the largest memfd made
	made     atomic.Uint64
	failed   atomic.Uint64

	bufs bufList // fill buffers, see bufList

	gcMu    sync.Mutex
	sinceGC int64 // bytes of memfds made since the last collection
}

// NewMemfds returns a maker whose live memfds should stay within limit
// bytes: past it, making one runs a garbage collection first (at most once
// per limit/4 bytes made, so that memfds legitimately held — open files —
// do not turn every make into a collection), closing the memfds nothing
// holds any more.
//
// onLive, when not nil, is told the live bytes after each change (a memfd
// made, or one found unreachable), e.g. to lower the Go heap's limit by
// what the memfds hold. It must be quick and safe for concurrent use.
func NewMemfds(limit int64, onLive func(live int64)) *Memfds {
	m := &Memfds{onLive: onLive}
	m.limit.Store(limit)
	return m
}

// SetLimit changes the live bytes past which making a memfd collects the
// unreachable ones first (the cache holding them shrank or grew).
func (m *Memfds) SetLimit(limit int64) { m.limit.Store(limit) }

// SetMaxFiles caps the memfds alive at once: each holds a file
// descriptor, and a cache of many small batches must not take the
// daemon's last ones (its source files and sockets need them). Past the
// cap, after a collection, batches are kept in memory instead. Call it
// before the first New or Fill.
func (m *Memfds) SetMaxFiles(n int64) { m.maxFiles = n }

// errTooManyFiles says a batch stays in memory for want of descriptors.
var errTooManyFiles = errors.New("too many memfd batches open at once (file descriptors)")

func (m *Memfds) add(n int64) int64 {
	live := m.live.Add(n)
	if m.onLive != nil {
		m.onLive(live)
	}
	return live
}

// New copies b into a new sealed memfd. On failure (no memfd_create, out of
// memory) it returns an in-memory blob of b and the reason.
func (m *Memfds) New(b []byte) (*Blob, error) {
	if !m.collect(int64(len(b))) {
		m.failed.Add(1)
		return Bytes(b), errTooManyFiles
	}
	x, err := Memfd(b)
	if err != nil {
		m.failed.Add(1)
		return Bytes(b), err
	}
	return m.track(x), nil
}

// Fill makes a sealed memfd of size bytes written by fill, which gets a
// reused buffer of exactly size bytes (stale contents: fill must write
// every byte) that is then copied into the memfd. Where no memfd
// can be made, it fills an in-memory blob instead and returns it with the
// reason; an error of fill's own is returned with a nil blob.
func (m *Memfds) Fill(size int64, fill func(dst []byte) error) (*Blob, error) {
	if !m.collect(size) {
		m.failed.Add(1)
		b := make([]byte, size)
		if err := fill(b); err != nil {
			return nil, err
		}
		return Bytes(b), errTooManyFiles
	}
	f, err := filledMemfd(&m.bufs, size, fill)
	var fillErr *fillError
	switch {
	case errors.As(err, &fillErr):
		return nil, fillErr.err
	case err != nil:
		m.failed.Add(1)
		b := make([]byte, size)
		if ferr := fill(b); ferr != nil {
			return nil, ferr
		}
		return Bytes(b), err
	}
	return m.track(&Blob{f: f, n: size}), nil
}

// fillError is an error of the caller's fill function.
type fillError struct{ err error }

func (e *fillError) Error() string { return e.err.Error() }

// filledMemfd makes a sealed memfd of size bytes: fill writes them into a
// buffer from pool, which is then copied into the memfd. The memfd is made
// first, so that where none can be made the batch is not built for nothing.
func filledMemfd(pool *bufList, size int64, fill func([]byte) error) (*os.File, error) {
	f, err := newMemfd()
	if err != nil {
		return nil, err
	}
	var buf []byte
	if size > 0 {
		buf = pool.get(size)
		defer pool.put(buf)
	}
	if err := fill(buf); err != nil {
		f.Close()
		return nil, &fillError{err}
	}
	if err := writeSeal(f, buf); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func newMemfd() (*os.File, error) {
	fd, err := unix.MemfdCreate("zenithfs-batch", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	return os.NewFile(uintptr(fd), "zenithfs-batch"), nil
}

// sealedMemfd makes a sealed memfd holding a copy of b.
func sealedMemfd(b []byte) (*os.File, error) {
	f, err := newMemfd()
	if err != nil {
		return nil, err
	}
	if err := writeSeal(f, b); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// writeSeal writes b into the empty memfd f and seals it.
func writeSeal(f *os.File, b []byte) error {
	fd := int(f.Fd())
	for off := 0; off < len(b); {
		n, err := unix.Pwrite(fd, b[off:], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("memfd write: %w", err)
		}
		off += n
	}
	return seal(f)
}

// Fill buffers are kept for reuse because their pages stay mapped, where
// fresh memory (a new mapping of the memfd, or new heap) pays a page fault
// per 4 KiB: on the 2-core VMs of bench/, writing a 1.3 MiB batch through a
// fresh memfd mapping took 3.8 ms, building it in a reused buffer and
// copying it in with pwrite 0.3 ms.
//
// The buffers are kept in a short list rather than a sync.Pool, which the
// garbage collector empties every other cycle: a daemon decoding collects
// often, and each emptying had the next batches build in fresh memory.
const (
	maxKept     = 4        // buffers kept (about the builds that run at once)
	maxKeptSize = 64 << 20 // bytes kept in all (so also the largest kept)
)

// bufList keeps a few fill buffers for reuse. Its zero value is empty and
// ready; it is safe for concurrent use.
type bufList struct {
	mu    sync.Mutex
	free  [][]byte
	bytes int64
}

// get returns a buffer of size bytes: the smallest kept one that is big
// enough, or a new one.
func (l *bufList) get(size int64) []byte {
	l.mu.Lock()
	best := -1
	for i, b := range l.free {
		if int64(cap(b)) >= size && (best < 0 || cap(b) < cap(l.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := l.free[best]
		l.free = append(l.free[:best], l.free[best+1:]...)
		l.bytes -= int64(cap(b))
		l.mu.Unlock()
		return b[:size]
	}
	l.mu.Unlock()
	// Round up so that batches of similar sizes share buffers.
	return make([]byte, size, (size+(1<<20)-1)&^((1<<20)-1))
}

// put keeps b for reuse if the list has room, dropping its smallest
// buffer to make room for a bigger one.
func (l *bufList) put(b []byte) {
	c := int64(cap(b))
	if c > maxKeptSize {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.free) > 0 && (len(l.free) >= maxKept || l.bytes+c > maxKeptSize) {
		small := 0
		for i := range l.free {
			if cap(l.free[i]) < cap(l.free[small]) {
				small = i
			}
		}
		if int64(cap(l.free[small])) >= c {
			return // the kept ones are all bigger: keep them
		}
		l.bytes -= int64(cap(l.free[small]))
		l.free = append(l.free[:small], l.free[small+1:]...)
	}
	l.free = append(l.free, b[:0])
	l.bytes += c
}

func seal(f *os.File) error {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("memfd seal: %w", err)
	}
	return nil
}

// track counts a new memfd blob as live until it is collected.
func (m *Memfds) track(x *Blob) *Blob {
	m.made.Add(1)
	for l := m.largest.Load(); x.n > l && !m.largest.CompareAndSwap(l, x.n); l = m.largest.Load() {
	}
	for now := m.add(x.n); ; {
		p := m.peak.Load()
		if now <= p || m.peak.CompareAndSwap(p, now) {
			break
		}
	}
	m.files.Add(1)
	runtime.AddCleanup(x, func(n int64) { m.add(-n); m.files.Add(-1) }, x.n)
	return x
}

// collect runs a garbage collection, so that memfds nothing holds any more
// are closed, before one of n bytes is made: when the live memfds pass the
// byte limit (at most once per limit/4 bytes made) or the file cap. It
// reports whether there is room for one more memfd under the cap.
func (m *Memfds) collect(n int64) bool {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	m.sinceGC += n
	limit := m.limit.Load()
	overBytes := m.live.Load()+n > limit && m.sinceGC >= limit/4
	atCap := m.maxFiles > 0 && m.files.Load() >= m.maxFiles
	if overBytes || atCap {
		runtime.GC()
		m.sinceGC = 0
	}
	return m.maxFiles <= 0 || m.files.Load() < m.maxFiles
}

// MemfdStats are a Memfds' counters.
type MemfdStats struct {
	Made      uint64 `json:"made"`
	Failed    uint64 `json:"failed"`
	LiveBytes int64  `json:"live_bytes"`
	PeakBytes int64  `json:"peak_live_bytes"`
	Largest   int64  `json:"largest_bytes"` // the largest memfd made
	Limit     int64  `json:"limit"`
}

// Stats returns the counters; LiveBytes counts memfds not yet found
// unreachable by a collection.
func (m *Memfds) Stats() MemfdStats {
	return MemfdStats{Made: m.made.Load(), Failed: m.failed.Load(), LiveBytes: m.live.Load(), PeakBytes: m.peak.Load(), Largest: m.largest.Load(), Limit: m.limit.Load()}
}

// Memfd copies b into a new sealed memfd, outside any Memfds' accounting
// (the caller closes it when done: Close).
func Memfd(b []byte) (*Blob, error) {
	f, err := sealedMemfd(b)
	if err != nil {
		return nil, err
	}
	return &Blob{f: f, n: int64(len(b))}, nil
}

// Close closes a memfd blob's file at once rather than when the blob is
// collected; the blob must not be used afterwards. No-op in memory.
func (x *Blob) Close() error {
	if x.f == nil {
		return nil
	}
	return x.f.Close()
}

// Fallback makes memfd blobs with M and, where one cannot be made, keeps
// the bytes in memory instead, telling OnFail (may be nil) why. It fits the
// prefetch store's Sealer.
type Fallback struct {
	M      *Memfds
	OnFail func(error)
}

// Seal returns b as a memfd blob, or in memory.
func (f Fallback) Seal(b []byte) *Blob {
	x, err := f.M.New(b)
	if err != nil && f.OnFail != nil {
		f.OnFail(err)
	}
	return x
}

// Fill returns a memfd blob (or an in-memory one) written by fill; only
// fill's own error is returned.
func (f Fallback) Fill(size int64, fill func(dst []byte) error) (*Blob, error) {
	x, err := f.M.Fill(size, fill)
	if x != nil && err != nil {
		if f.OnFail != nil {
			f.OnFail(err)
		}
		return x, nil
	}
	return x, err
}
