package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/zenithfs/zenithfs/internal/uring"
)

// Local is a Store over a directory of the local filesystem. Keys are paths
// relative to Root. Reads go through an internal/uring Reader: ReadRanges
// submits all ranges of a call as one io_uring batch, ReadAt is a batch of
// one, and where io_uring is off or refused both use pread.
//
// The Reader (and its rings) is set up on the first read; a Local made as a
// struct literal, &Local{Root: dir}, works too and reads in ModeAuto. Files
// are opened per call: no descriptor outlives a read.
type Local struct {
	Root string

	opts   uring.Options
	once   sync.Once
	rd     atomic.Pointer[uring.Reader] // set once, by reader
	rdErr  error                        // written in once
	closed atomic.Bool
}

var _ RangeReader = (*Local)(nil)

// LocalOption configures NewLocal and OpenLocal.
type LocalOption func(*uring.Options)

// WithIOUring sets the --io-uring mode (default uring.ModeAuto).
func WithIOUring(mode uring.Mode) LocalOption {
	return func(o *uring.Options) { o.Mode = mode }
}

// WithLogger sets the logger that receives the one line logged when
// ModeAuto falls back to pread.
func WithLogger(l *slog.Logger) LocalOption {
	return func(o *uring.Options) { o.Logger = l }
}

// WithReaderOptions replaces every reader option (ring size, pool size,
// simulated setup refusal for tests); options after it still apply.
func WithReaderOptions(opts uring.Options) LocalOption {
	return func(o *uring.Options) { *o = opts }
}

// NewLocal returns a Store rooted at dir. It cannot fail: its reader is set
// up on the first read, and if that fails (only possible with ModeOn) every
// read returns the setup error. Use OpenLocal to get that error up front.
func NewLocal(dir string, opts ...LocalOption) *Local {
	l := &Local{Root: dir}
	for _, o := range opts {
		o(&l.opts)
	}
	return l
}

// OpenLocal is NewLocal that sets the reader up right away, so that
// --io-uring on fails here, with an error wrapping uring.ErrUnavailable,
// where the kernel refuses io_uring.
func OpenLocal(dir string, opts ...LocalOption) (*Local, error) {
	l := NewLocal(dir, opts...)
	if _, err := l.reader(); err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	return l, nil
}

// reader returns the Local's reader, setting it up on first use. Its rings
// are released by Close or, for a Local dropped without Close, once the
// Local is garbage.
func (l *Local) reader() (*uring.Reader, error) {
	l.once.Do(func() {
		rd, err := uring.NewReader(l.opts)
		if err != nil {
			l.rdErr = err
			return
		}
		l.rd.Store(rd)
		runtime.AddCleanup(l, func(rd *uring.Reader) { _ = rd.Close() }, rd)
	})
	if l.closed.Load() {
		return nil, fmt.Errorf("local store %s: %w", l.Root, uring.ErrClosed)
	}
	return l.rd.Load(), l.rdErr
}

// Close releases the io_uring rings. Reads after Close fail.
func (l *Local) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	l.once.Do(func() {}) // no reader will be set up any more
	if rd := l.rd.Load(); rd != nil {
		return rd.Close()
	}
	return nil
}

// LocalStats are the local store's read counters.
type LocalStats struct {
	Mode         string // the --io-uring mode: auto, on or off
	UringReads   uint64 // ranges read through io_uring (ReadAt counts one)
	PreadReads   uint64 // ranges read with pread
	UringBatches uint64 // io_uring submission rounds
	Fallback     bool   // auto mode fell back to pread (io_uring refused)
}

// Stats returns the read counters; all zero before the first read.
func (l *Local) Stats() LocalStats {
	st := LocalStats{Mode: l.opts.Mode.String()}
	rd := l.rd.Load()
	if rd == nil {
		return st
	}
	s := rd.Stats()
	st.UringReads, st.PreadReads, st.UringBatches, st.Fallback = s.UringReads, s.PreadReads, s.UringBatches, s.Fallback
	return st
}

// path maps a key to a file below Root. Cleaning the key as an absolute
// path first drops any ".." that would climb out of Root.
func (l *Local) path(key string) string {
	return filepath.Join(l.Root, filepath.FromSlash(path.Clean("/"+key)))
}

// Stat implements Store.
func (l *Local) Stat(_ context.Context, key string) (Info, error) {
	fi, err := os.Stat(l.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("stat %s: %w", key, ErrNotExist)
		}
		return Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat %s: not a regular file", key)
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements Store. Symbolic links are followed, to files and to
// directories (a dataset directory is often a tree of links into shared
// storage); a link to a directory already being walked, or a dangling
// link, is skipped. A file reached through a link is listed under the
// link's path.
func (l *Local) List(_ context.Context, prefix string) ([]Info, error) {
	var out []Info
	var walk func(dir, rel string, seen map[string]bool) error
	walk = func(dir, rel string, seen map[string]bool) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			key := path.Join(rel, e.Name())
			var fi fs.FileInfo
			if e.Type()&fs.ModeSymlink != 0 {
				if fi, err = os.Stat(p); err != nil {
					if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
						continue // dangling, or a loop of links
					}
					return err // unreadable: not the same as gone
				}
			} else if fi, err = e.Info(); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // removed while listing
				}
				return err
			}
			switch {
			case fi.IsDir():
				if !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") && !strings.HasPrefix(key, prefix) {
					continue // nothing below it can match
				}
				real, err := filepath.EvalSymlinks(p)
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						continue // removed while listing
					}
					return err
				}
				if seen[real] {
					continue // a link back up the tree
				}
				seen[real] = true
				if err := walk(p, key, seen); err != nil {
					return err
				}
				delete(seen, real)
			case fi.Mode().IsRegular() && strings.HasPrefix(key, prefix):
				out = append(out, Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
			}
		}
		return nil
	}
	root, err := filepath.EvalSymlinks(l.Root)
	if err == nil {
		err = walk(l.Root, "", map[string]bool{root: true})
	}
	if err != nil {
		return nil, fmt.Errorf("list %s under %s: %w", prefix, l.Root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// open opens key for reading, with the reader to read it through.
func (l *Local) open(ctx context.Context, key string) (*os.File, *uring.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", key, err)
	}
	rd, err := l.reader()
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", key, err)
	}
	f, err := os.Open(l.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("open %s: %w", key, ErrNotExist)
		}
		return nil, nil, fmt.Errorf("open %s: %w", key, err)
	}
	return f, rd, nil
}

// ReadAt implements Store, as a batch of one range.
func (l *Local) ReadAt(ctx context.Context, key string, p []byte, off int64) (int, error) {
	rs := [1]Range{{Off: off, Buf: p}}
	_ = l.ReadRanges(ctx, key, rs[:]) // the range carries the result
	return rs[0].N, rs[0].Err
}

// ReadRanges implements RangeReader: the file is opened once and all
// ranges go to the kernel as one io_uring batch (or are pread one by one
// where io_uring is off or refused). A range's Err is io.EOF when the file
// ends before its buffer is full.
func (l *Local) ReadRanges(ctx context.Context, key string, ranges []Range) error {
	f, rd, err := l.open(ctx, key)
	if err != nil {
		for i := range ranges {
			ranges[i].N, ranges[i].Err = 0, err
		}
		return err
	}
	defer f.Close()
	reqs := make([]uring.Req, len(ranges))
	for i, r := range ranges {
		reqs[i] = uring.Req{Off: r.Off, Buf: r.Buf}
	}
	_ = rd.ReadRanges(int(f.Fd()), reqs) // each range carries its error
	var first error
	for i := range ranges {
		r, q := &ranges[i], &reqs[i]
		r.N, r.Err = q.N, q.Err
		if r.Err != nil && r.Err != io.EOF {
			r.Err = fmt.Errorf("read %s at %d: %w", key, r.Off, r.Err)
		}
		if r.Err != nil && first == nil {
			first = r.Err
			if first == io.EOF {
				first = fmt.Errorf("read %s at %d: %w", key, r.Off, io.EOF)
			}
		}
	}
	return first
}
