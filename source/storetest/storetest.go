// Package storetest is the conformance suite of source.Store: every store
// (local files, S3) runs Run with a factory that makes a store holding given
// objects, and must pass all of it under -race.
//
// The suite checks what the layers above rely on: Stat sizes and identities,
// ErrNotExist for missing keys, List order (byte-wise lexicographic) and
// prefix filtering over nested keys, ReadAt with io.ReaderAt semantics at
// random offsets and at the end of an object, source.ReadRanges (whichever
// path the store takes) including overlapping, adjacent, empty and
// past-the-end ranges, concurrent readers, and an identity that changes when
// an object is rewritten.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/source"
)

// Fixture is one store under test and a way to change its objects.
type Fixture struct {
	Store source.Store
	// Put writes or overwrites the object key with data the way a user of
	// the backend would (a file write, a PUT). After Put returns, the
	// change must be visible through Store, including in its identity: a
	// fixture over an mtime-identified store lets the clock tick first.
	Put func(t *testing.T, key string, data []byte)
}

// Factory makes a fresh store holding exactly files (key → content).
type Factory func(t *testing.T, files map[string][]byte) Fixture

// Run runs the conformance suite against the stores newFixture makes.
func Run(t *testing.T, newFixture Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"Stat", testStat},
		{"StatMissing", testStatMissing},
		{"List", testList},
		{"ReadAtRandom", testReadAtRandom},
		{"ReadAtEOF", testReadAtEOF},
		{"ReadRanges", testReadRanges},
		{"Concurrent", testConcurrent},
		{"Rewrite", testRewrite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newFixture) })
	}
}

// Bytes returns n deterministic pseudo-random bytes for seed.
func Bytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func testStat(t *testing.T, newFixture Factory) {
	files := map[string][]byte{
		"a.bin":         Bytes(1, 1000),
		"empty":         {},
		"dir/b.bin":     Bytes(2, 1),
		"dir/sub/c.bin": Bytes(3, 70_001),
	}
	s := newFixture(t, files).Store
	for key, data := range files {
		info, err := s.Stat(ctx(t), key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		if info.Key != key || info.Size != int64(len(data)) {
			t.Errorf("Stat(%q) = key %q size %d, want key %q size %d", key, info.Key, info.Size, key, len(data))
		}
		if info.ModTime.IsZero() {
			t.Errorf("Stat(%q): zero ModTime", key)
		}
		if id := info.Identity(); id == "" {
			t.Errorf("Stat(%q): empty identity", key)
		}
		again, err := s.Stat(ctx(t), key)
		if err != nil || again.Identity() != info.Identity() {
			t.Errorf("Stat(%q) twice: identity %q then %q (%v)", key, info.Identity(), again.Identity(), err)
		}
	}
}

func testStatMissing(t *testing.T, newFixture Factory) {
	s := newFixture(t, map[string][]byte{"dir/a.bin": Bytes(4, 10)}).Store
	for _, key := range []string{"missing.bin", "dir/missing.bin", "dir/a.bin.x", "nodir/a.bin"} {
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, source.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want ErrNotExist", key, err)
		}
		if _, err := s.ReadAt(ctx(t), key, make([]byte, 4), 0); !errors.Is(err, source.ErrNotExist) {
			t.Errorf("ReadAt(%q) = %v, want ErrNotExist", key, err)
		}
		if err := source.ReadRanges(ctx(t), s, key, []source.Range{{Off: 0, Buf: make([]byte, 4)}}); !errors.Is(err, source.ErrNotExist) {
			t.Errorf("ReadRanges(%q) = %v, want ErrNotExist", key, err)
		}
	}
	// A "directory" is no object: whatever the error, Stat must fail.
	if info, err := s.Stat(ctx(t), "dir"); err == nil {
		t.Errorf("Stat(dir) = %+v, want an error", info)
	}
}

func testList(t *testing.T, newFixture Factory) {
	files := map[string][]byte{}
	keys := []string{"a.bin", "ab/c.bin", "b/x.bin", "b/y/z.bin", "b/y/zz.bin", "c.bin", "x-a", "x/a", "x0", "x/b/c/d/e.bin"}
	for i, k := range keys {
		files[k] = Bytes(uint64(100+i), 10*i+1)
	}
	s := newFixture(t, files).Store
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", keys},
		{"b/", []string{"b/x.bin", "b/y/z.bin", "b/y/zz.bin"}},
		{"b/y/", []string{"b/y/z.bin", "b/y/zz.bin"}},
		{"a", []string{"a.bin", "ab/c.bin"}},
		{"x", []string{"x-a", "x/a", "x/b/c/d/e.bin", "x0"}},
		{"x/", []string{"x/a", "x/b/c/d/e.bin"}},
		{"c.bin", []string{"c.bin"}},
		{"nothing/", nil},
	}
	for _, tc := range cases {
		got, err := s.List(ctx(t), tc.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		want := slices.Clone(tc.want)
		sort.Strings(want) // byte-wise order: "x-a" < "x/a" < "x0"
		var gotKeys []string
		for _, info := range got {
			gotKeys = append(gotKeys, info.Key)
			if data, ok := files[info.Key]; !ok || info.Size != int64(len(data)) {
				t.Errorf("List(%q): %s size %d, want %d", tc.prefix, info.Key, info.Size, len(data))
			}
		}
		if !slices.Equal(gotKeys, want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, gotKeys, want)
		}
	}
}

func testReadAtRandom(t *testing.T, newFixture Factory) {
	data := Bytes(5, 300*1024+7)
	s := newFixture(t, map[string][]byte{"obj": data}).Store
	r := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 100; i++ {
		off := r.IntN(len(data))
		n := 1 + r.IntN(len(data)-off)
		if i%3 == 0 {
			n = 1 + r.IntN(min(4096, len(data)-off))
		}
		p := make([]byte, n)
		got, err := s.ReadAt(ctx(t), "obj", p, int64(off))
		end := off+n == len(data)
		if got != n || (err != nil && !(end && err == io.EOF)) {
			t.Fatalf("ReadAt(off %d, len %d) = %d, %v", off, n, got, err)
		}
		if !bytes.Equal(p, data[off:off+n]) {
			t.Fatalf("ReadAt(off %d, len %d): bytes differ", off, n)
		}
	}
}

func testReadAtEOF(t *testing.T, newFixture Factory) {
	data := Bytes(6, 5000)
	s := newFixture(t, map[string][]byte{"obj": data, "empty": {}}).Store
	cases := []struct {
		name    string
		key     string
		off     int64
		n       int
		wantN   int
		wantEOF bool // io.EOF required; otherwise nil (or EOF when the read ends at the end)
	}{
		{"whole", "obj", 0, 5000, 5000, false},
		{"tail", "obj", 4990, 10, 10, false},
		{"across end", "obj", 4990, 20, 10, true},
		{"larger than object", "obj", 0, 6000, 5000, true},
		{"at end", "obj", 5000, 10, 0, true},
		{"past end", "obj", 5100, 10, 0, true},
		{"empty object", "empty", 0, 1, 0, true},
		{"zero length", "obj", 10, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			n, err := s.ReadAt(ctx(t), tc.key, p, tc.off)
			if n != tc.wantN {
				t.Errorf("ReadAt n = %d, want %d (err %v)", n, tc.wantN, err)
			}
			switch {
			case tc.wantEOF && err != io.EOF:
				t.Errorf("ReadAt err = %v, want io.EOF", err)
			case !tc.wantEOF && err != nil && !(err == io.EOF && tc.off+int64(tc.n) >= int64(len(data))):
				t.Errorf("ReadAt err = %v, want nil", err)
			}
			if tc.key == "obj" && n > 0 && !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
				t.Errorf("ReadAt bytes differ")
			}
		})
	}
	if n, err := s.ReadAt(ctx(t), "obj", make([]byte, 4), -1); err == nil {
		t.Errorf("ReadAt at -1 = %d, nil; want an error", n)
	}
}

// checkRanges compares each range's outcome with data.
func checkRanges(t *testing.T, data []byte, rs []source.Range, err error) {
	t.Helper()
	anyErr := false
	for i, r := range rs {
		size := int64(len(data))
		wantN := int(max(0, min(int64(len(r.Buf)), size-r.Off)))
		if r.N != wantN {
			t.Fatalf("range %d (off %d, len %d): N = %d, want %d (err %v)", i, r.Off, len(r.Buf), r.N, wantN, r.Err)
		}
		switch {
		case wantN < len(r.Buf):
			if !errors.Is(r.Err, io.EOF) {
				t.Fatalf("range %d (off %d, len %d): Err = %v, want io.EOF", i, r.Off, len(r.Buf), r.Err)
			}
		case r.Err != nil && !(errors.Is(r.Err, io.EOF) && r.Off+int64(len(r.Buf)) == size):
			t.Fatalf("range %d (off %d, len %d): Err = %v, want nil", i, r.Off, len(r.Buf), r.Err)
		}
		anyErr = anyErr || r.Err != nil
		if r.N > 0 && !bytes.Equal(r.Buf[:r.N], data[r.Off:r.Off+int64(r.N)]) {
			t.Fatalf("range %d (off %d, len %d): bytes differ", i, r.Off, len(r.Buf))
		}
	}
	if anyErr != (err != nil) {
		t.Fatalf("ReadRanges returned %v, but range errors: %v", err, anyErr)
	}
}

func randomRanges(r *rand.Rand, size, count int) []source.Range {
	var rs []source.Range
	for i := 0; i < count; i++ {
		off := r.IntN(size)
		var n int
		switch i % 5 {
		case 0:
			n = r.IntN(size - off + 1) // up to the end, possibly empty
		case 1:
			n = 1 + r.IntN(64*1024)
			off = max(0, size-n/2) // across the end
		case 2:
			if len(rs) > 0 { // adjacent to the previous range
				prev := rs[len(rs)-1]
				off = int(prev.Off) + len(prev.Buf)
			}
			n = r.IntN(32 * 1024)
		default:
			n = 1 + r.IntN(min(256*1024, size-off))
		}
		rs = append(rs, source.Range{Off: int64(off), Buf: make([]byte, n)})
	}
	return rs
}

func testReadRanges(t *testing.T, newFixture Factory) {
	data := Bytes(7, 3<<20+123)
	s := newFixture(t, map[string][]byte{"obj": data, "empty": {}}).Store
	size := int64(len(data))
	cases := []struct {
		name   string
		ranges []source.Range
	}{
		{"whole object", []source.Range{{Off: 0, Buf: make([]byte, size)}}},
		{"adjacent", []source.Range{{Off: 0, Buf: make([]byte, 100)}, {Off: 100, Buf: make([]byte, 200)}, {Off: 300, Buf: make([]byte, 1)}}},
		{"overlapping", []source.Range{{Off: 1000, Buf: make([]byte, 5000)}, {Off: 2000, Buf: make([]byte, 100)}, {Off: 1000, Buf: make([]byte, 5000)}}},
		{"unsorted", []source.Range{{Off: 900_000, Buf: make([]byte, 10)}, {Off: 5, Buf: make([]byte, 10)}, {Off: 400_000, Buf: make([]byte, 70_000)}}},
		{"empty ranges", []source.Range{{Off: 10, Buf: nil}, {Off: size + 10, Buf: []byte{}}, {Off: 20, Buf: make([]byte, 5)}}},
		{"past end", []source.Range{{Off: size - 10, Buf: make([]byte, 100)}, {Off: size, Buf: make([]byte, 1)}, {Off: size + 1000, Buf: make([]byte, 10)}, {Off: 0, Buf: make([]byte, 10)}}},
		{"random", randomRanges(rand.New(rand.NewPCG(7, 7)), int(size), 60)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := source.ReadRanges(ctx(t), s, "obj", tc.ranges)
			checkRanges(t, data, tc.ranges, err)
		})
	}
	t.Run("empty object", func(t *testing.T) {
		rs := []source.Range{{Off: 0, Buf: make([]byte, 10)}}
		err := source.ReadRanges(ctx(t), s, "empty", rs)
		if rs[0].N != 0 || !errors.Is(rs[0].Err, io.EOF) || !errors.Is(err, io.EOF) {
			t.Fatalf("ReadRanges(empty) = N %d, Err %v, err %v; want 0, EOF, EOF", rs[0].N, rs[0].Err, err)
		}
	})
}

func testConcurrent(t *testing.T, newFixture Factory) {
	files := map[string][]byte{
		"one":   Bytes(8, 200_000),
		"two":   Bytes(9, 1<<20+3),
		"three": Bytes(10, 17),
	}
	s := newFixture(t, files).Store
	keys := []string{"one", "two", "three"}
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 11))
			for i := 0; i < 20; i++ {
				key := keys[r.IntN(len(keys))]
				data := files[key]
				if err := concurrentOp(ctx(t), s, r, key, data, i); err != nil {
					errc <- fmt.Errorf("goroutine %d op %d on %s: %w", g, i, key, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func concurrentOp(c context.Context, s source.Store, r *rand.Rand, key string, data []byte, i int) error {
	switch i % 3 {
	case 0:
		info, err := s.Stat(c, key)
		if err != nil || info.Size != int64(len(data)) {
			return fmt.Errorf("Stat = %+v, %v", info, err)
		}
	case 1:
		off := r.IntN(len(data))
		p := make([]byte, 1+r.IntN(len(data)-off))
		n, err := s.ReadAt(c, key, p, int64(off))
		if n != len(p) || (err != nil && err != io.EOF) || !bytes.Equal(p, data[off:off+n]) {
			return fmt.Errorf("ReadAt(%d, %d) = %d, %v or bytes differ", off, len(p), n, err)
		}
	default:
		rs := randomRanges(r, len(data), 8)
		err := source.ReadRanges(c, s, key, rs)
		for j, rg := range rs {
			wantN := int(max(0, min(int64(len(rg.Buf)), int64(len(data))-rg.Off)))
			if rg.N != wantN || (rg.N > 0 && !bytes.Equal(rg.Buf[:rg.N], data[rg.Off:rg.Off+int64(rg.N)])) {
				return fmt.Errorf("range %d: N %d want %d or bytes differ (err %v)", j, rg.N, wantN, err)
			}
		}
	}
	return nil
}

func testRewrite(t *testing.T, newFixture Factory) {
	old := Bytes(12, 4096)
	f := newFixture(t, map[string][]byte{"obj": old})
	s := f.Store
	info0, err := s.Stat(ctx(t), "obj")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		data []byte
	}{
		{"same size", Bytes(13, 4096)},
		{"larger", Bytes(14, 9000)},
		{"smaller", Bytes(15, 10)},
	}
	prev := info0
	for _, st := range steps {
		f.Put(t, "obj", st.data)
		info, err := s.Stat(ctx(t), "obj")
		if err != nil {
			t.Fatalf("%s: Stat: %v", st.name, err)
		}
		if info.Size != int64(len(st.data)) {
			t.Errorf("%s: size %d, want %d", st.name, info.Size, len(st.data))
		}
		if info.Identity() == prev.Identity() {
			t.Errorf("%s: identity %q unchanged after a rewrite", st.name, info.Identity())
		}
		p := make([]byte, len(st.data))
		if n, err := s.ReadAt(ctx(t), "obj", p, 0); n != len(p) || (err != nil && err != io.EOF) || !bytes.Equal(p, st.data) {
			t.Errorf("%s: ReadAt = %d, %v or old bytes", st.name, n, err)
		}
		prev = info
	}
	f.Put(t, "new/obj", []byte("hello"))
	list, err := s.List(ctx(t), "")
	if err != nil || len(list) != 2 || list[0].Key != "new/obj" || list[1].Key != "obj" {
		t.Errorf("List after adding new/obj = %+v, %v", list, err)
	}
}
