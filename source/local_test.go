package source_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/zenithfs/zenithfs/internal/testlog"
	"github.com/zenithfs/zenithfs/internal/uring"
	"github.com/zenithfs/zenithfs/source"
	"github.com/zenithfs/zenithfs/source/storetest"
)

// localDir writes files (key → content) below a new directory.
func localDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range files {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, v, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var localFiles = map[string][]byte{
	"a/one.arrow":   storetest.Bytes(1, 3<<20+5),
	"a/b/two.arrow": storetest.Bytes(2, 70_001),
	"three":         storetest.Bytes(3, 1),
	"empty":         {},
}

// TestLocalReadRangesMatchesReadAt reads a few hundred random ranges of
// several files in one ReadRanges call each, compares every range with
// ReadAt of the same range and with the file, and checks through the
// counters which path the reads took.
func TestLocalReadRangesMatchesReadAt(t *testing.T) {
	dir := localDir(t, localFiles)
	refused := uring.Options{Mode: uring.ModeAuto, SimulateSetupError: syscall.EPERM}
	tests := []struct {
		name      string
		opts      []source.LocalOption
		wantUring bool
	}{
		{"default", nil, true},
		{"on small ring", []source.LocalOption{source.WithReaderOptions(uring.Options{Entries: 16}), source.WithIOUring(uring.ModeOn)}, true},
		{"off", []source.LocalOption{source.WithIOUring(uring.ModeOff)}, false},
		{"auto refused", []source.LocalOption{source.WithReaderOptions(refused)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := testlog.New(slog.LevelInfo)
			l, err := source.OpenLocal(dir, append(tc.opts, source.WithLogger(log))...)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 1))
			var ranges int
			for key, data := range localFiles {
				rs := make([]source.Range, 300)
				for i := range rs {
					off := rng.IntN(len(data) + 100)
					rs[i] = source.Range{Off: int64(off), Buf: make([]byte, rng.IntN(32<<10))}
				}
				ranges += len(rs)
				err := l.ReadRanges(ctx, key, rs)
				var anyErr bool
				for i, r := range rs {
					p := make([]byte, len(r.Buf))
					n, rerr := l.ReadAt(ctx, key, p, r.Off)
					if r.N != n || !bytes.Equal(r.Buf[:r.N], p[:n]) || r.Err != rerr {
						t.Fatalf("%s range %d (off %d len %d): ReadRanges (%d, %v), ReadAt (%d, %v)", key, i, r.Off, len(r.Buf), r.N, r.Err, n, rerr)
					}
					end := min(r.Off+int64(len(r.Buf)), int64(len(data)))
					if r.Off < end && !bytes.Equal(r.Buf[:r.N], data[r.Off:end]) {
						t.Fatalf("%s range %d: bytes differ from the file", key, i)
					}
					anyErr = anyErr || r.Err != nil
				}
				if anyErr != (err != nil) || (err != nil && !errors.Is(err, io.EOF)) {
					t.Fatalf("%s: ReadRanges returned %v; ranges failed: %v", key, err, anyErr)
				}
			}
			st := l.Stats()
			total := uint64(2 * ranges) // ReadRanges, then ReadAt, of each
			if tc.wantUring {
				if st.UringReads != total || st.PreadReads != 0 || st.Fallback {
					t.Fatalf("stats %+v: want all %d reads through io_uring", st, total)
				}
				// Ranges of 300 per file in rings of at most 256 entries, plus
				// one round per ReadAt at least.
				if min := uint64(ranges + 2*len(localFiles)); st.UringBatches < min {
					t.Fatalf("stats %+v: want at least %d batches", st, min)
				}
			} else if st.PreadReads != total || st.UringReads != 0 || st.UringBatches != 0 {
				t.Fatalf("stats %+v: want all %d reads by pread", st, total)
			}
			if st.Fallback != (tc.name == "auto refused") {
				t.Fatalf("stats %+v: wrong Fallback", st)
			}
			wantLines := 0
			if st.Fallback {
				wantLines = 1
			}
			if l := logs.Lines(); len(l) != wantLines {
				t.Fatalf("%d log lines, want %d: %q", len(l), wantLines, l)
			}
		})
	}
}

func TestLocalMissingKey(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(outside, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := source.NewLocal(dir)
	defer l.Close()
	ctx := context.Background()
	// "../secret" exists relative to the root, but keys cannot leave it.
	for _, key := range []string{"nope", "a/b/nope", "../secret", "/../../secret"} {
		if _, err := l.ReadAt(ctx, key, make([]byte, 1), 0); !errors.Is(err, source.ErrNotExist) {
			t.Errorf("ReadAt(%q) = %v, want ErrNotExist", key, err)
		}
		rs := []source.Range{{Buf: make([]byte, 1)}, {Off: 5, Buf: make([]byte, 1)}}
		if err := l.ReadRanges(ctx, key, rs); !errors.Is(err, source.ErrNotExist) || !errors.Is(rs[1].Err, source.ErrNotExist) {
			t.Errorf("ReadRanges(%q) = %v / %v, want ErrNotExist", key, err, rs[1].Err)
		}
		if _, err := l.Stat(ctx, key); !errors.Is(err, source.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want ErrNotExist", key, err)
		}
	}
}

func TestOpenLocalOnRefused(t *testing.T) {
	dir := localDir(t, map[string][]byte{"f": []byte("data")})
	opts := []source.LocalOption{
		source.WithReaderOptions(uring.Options{SimulateSetupError: syscall.EPERM}),
		source.WithIOUring(uring.ModeOn),
	}
	if l, err := source.OpenLocal(dir, opts...); err == nil || !errors.Is(err, uring.ErrUnavailable) || !errors.Is(err, syscall.EPERM) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("OpenLocal with --io-uring on, setup refused: %v; want ErrUnavailable and EPERM", err)
	}
	// NewLocal cannot fail; its reads carry the error instead.
	l := source.NewLocal(dir, opts...)
	defer l.Close()
	if _, err := l.ReadAt(context.Background(), "f", make([]byte, 4), 0); !errors.Is(err, uring.ErrUnavailable) {
		t.Fatalf("ReadAt: %v, want ErrUnavailable", err)
	}
	if _, err := l.Stat(context.Background(), "f"); err != nil {
		t.Fatalf("Stat does not need the reader: %v", err)
	}
}

// TestLocalConcurrentFallback reads from many goroutines through a store
// whose io_uring setup is refused: all reads succeed by pread, and the
// fallback is logged exactly once.
func TestLocalConcurrentFallback(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refusal error
	}{{"uring", nil}, {"refused", syscall.ENOSYS}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := localDir(t, localFiles)
			log, logs := testlog.New(slog.LevelInfo)
			l := source.NewLocal(dir, source.WithReaderOptions(uring.Options{Entries: 8, Rings: 3, SimulateSetupError: tc.refusal}), source.WithLogger(log))
			defer l.Close()
			data := localFiles["a/one.arrow"]
			var wg sync.WaitGroup
			errc := make(chan error, 12)
			for g := range 12 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 2))
					for range 10 {
						rs := make([]source.Range, 20)
						for i := range rs {
							rs[i] = source.Range{Off: int64(rng.IntN(len(data) - 4096)), Buf: make([]byte, 4096)}
						}
						if err := l.ReadRanges(context.Background(), "a/one.arrow", rs); err != nil {
							errc <- err
							return
						}
						for _, r := range rs {
							if !bytes.Equal(r.Buf, data[r.Off:r.Off+4096]) {
								errc <- errors.New("bytes differ")
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			st := l.Stats()
			if tc.refusal == nil {
				if st.UringReads != 12*10*20 || st.Fallback || len(logs.Lines()) != 0 {
					t.Fatalf("stats %+v, log %q: want every read through io_uring", st, logs.Lines())
				}
				return
			}
			if st.PreadReads != 12*10*20 || !st.Fallback || st.Mode != "auto" {
				t.Fatalf("stats %+v: want every read by pread after the fallback", st)
			}
			if l := logs.Lines(); len(l) != 1 || !strings.Contains(l[0], "pread") {
				t.Fatalf("want exactly one fallback log line, got %q", l)
			}
		})
	}
}

func TestLocalCloseAndContext(t *testing.T) {
	dir := localDir(t, map[string][]byte{"f": []byte("data")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := source.NewLocal(dir)
	if _, err := l.ReadAt(ctx, "f", make([]byte, 4), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAt with a canceled context: %v", err)
	}
	if n, err := l.ReadAt(context.Background(), "f", make([]byte, 4), 0); n != 4 || err != nil {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadAt(context.Background(), "f", make([]byte, 4), 0); !errors.Is(err, uring.ErrClosed) {
		t.Fatalf("ReadAt after Close: %v, want ErrClosed", err)
	}
	// A struct literal is a working store too.
	lit := &source.Local{Root: dir}
	defer lit.Close()
	p := make([]byte, 10)
	if n, err := lit.ReadAt(context.Background(), "f", p, 0); n != 4 || err != io.EOF || string(p[:n]) != "data" {
		t.Fatalf("literal Local ReadAt: %d, %v, %q", n, err, p[:n])
	}
	if st := lit.Stats(); st.UringReads != 1 {
		t.Fatalf("literal Local stats %+v: want one io_uring read", st)
	}
}

func TestLocalListFollowsLinks(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "a.csv"), "a")
	write(filepath.Join(outside, "b.csv"), "bb")
	write(filepath.Join(outside, "shard", "c.csv"), "ccc")
	link(filepath.Join(outside, "b.csv"), filepath.Join(root, "b.csv"))
	link(filepath.Join(outside, "shard"), filepath.Join(root, "shard"))
	link(root, filepath.Join(root, "loop"))                                // a link back up: skipped
	link(filepath.Join(outside, "gone.csv"), filepath.Join(root, "x.csv")) // dangling: skipped
	got, err := source.NewLocal(root).List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, in := range got {
		keys = append(keys, fmt.Sprintf("%s:%d", in.Key, in.Size))
	}
	if want := "a.csv:1 b.csv:2 shard/c.csv:3"; strings.Join(keys, " ") != want {
		t.Fatalf("listed %v, want %s", keys, want)
	}
	if got, err := source.NewLocal(root).List(context.Background(), "shard/"); err != nil || len(got) != 1 || got[0].Key != "shard/c.csv" {
		t.Fatalf("list under shard/: %v, %v", got, err)
	}
}
