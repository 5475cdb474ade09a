package blob

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestBlobsReadTheirBytes(t *testing.T) {
	want := pattern(100_000)
	m := NewMemfds(1<<30, nil)
	mem, err := m.New(want)
	if err != nil {
		t.Fatal(err)
	}
	if mem.File() == nil {
		t.Fatal("Memfds.New returned no memfd")
	}
	for _, x := range []*Blob{Bytes(want), mem} {
		if x.Len() != int64(len(want)) {
			t.Fatalf("len %d", x.Len())
		}
		d, err := x.Data()
		if err != nil || !bytes.Equal(d, want) {
			t.Fatalf("Data: %v", err)
		}
		buf := make([]byte, 4096)
		for _, off := range []int64{0, 1, 4095, 99_000, 99_999} {
			got, err := x.Slice(buf, off, 4096)
			if err != nil || !bytes.Equal(got, want[off:min(off+4096, int64(len(want)))]) {
				t.Fatalf("Slice at %d: %d bytes, %v", off, len(got), err)
			}
		}
		if got, err := x.Slice(buf, 100_000, 10); err != nil || len(got) != 0 {
			t.Fatalf("Slice at the end: %d bytes, %v", len(got), err)
		}
		if n, err := x.ReadAt(make([]byte, 10), 99_995); n != 5 || err != io.EOF {
			t.Fatalf("ReadAt past the end: %d, %v", n, err)
		}
	}
}

func TestMemfdIsSealed(t *testing.T) {
	x, err := NewMemfds(1<<30, nil).New([]byte("immutable"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.File().WriteAt([]byte("X"), 0); err == nil {
		t.Fatal("a write into a sealed memfd succeeded")
	}
	if d, _ := x.Data(); string(d) != "immutable" {
		t.Fatalf("bytes now %q", d)
	}
}

// TestMemfdsCollectUnreachable: memfds nothing holds are closed once their
// bytes pass the limit, so live memfd memory stays near it.
func TestMemfdsCollectUnreachable(t *testing.T) {
	const limit = 8 << 20
	m := NewMemfds(limit, nil)
	b := pattern(1 << 20)
	var peak int64
	for i := 0; i < 64; i++ {
		if _, err := m.New(b); err != nil { // dropped at once
			t.Fatal(err)
		}
		peak = max(peak, m.Stats().LiveBytes)
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().LiveBytes > 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if st := m.Stats(); st.LiveBytes != 0 || st.Made != 64 {
		t.Fatalf("after dropping every memfd: %+v", st)
	}
	// Collections run along the way (every limit/4 bytes past the limit),
	// so the live bytes never approach all 64 MiB made.
	if peak > 6*limit {
		t.Fatalf("64 MiB of dropped memfds peaked at %d live bytes, limit %d", peak, limit)
	}
}

func TestFillWritesTheMemfdInPlace(t *testing.T) {
	m := NewMemfds(1<<30, nil)
	want := pattern(300_000)
	x, err := m.Fill(int64(len(want)), func(dst []byte) error {
		if len(dst) != len(want) {
			return fmt.Errorf("dst of %d bytes", len(dst))
		}
		copy(dst, want)
		return nil
	})
	if err != nil || x.File() == nil {
		t.Fatalf("Fill: %v (memfd %v)", err, x != nil && x.File() != nil)
	}
	if d, _ := x.Data(); !bytes.Equal(d, want) {
		t.Fatal("memfd bytes differ from what fill wrote")
	}
	if _, err := x.File().WriteAt([]byte("X"), 0); err == nil {
		t.Fatal("a filled memfd is not sealed")
	}
	boom := errors.New("boom")
	if x, err := m.Fill(10, func([]byte) error { return boom }); x != nil || !errors.Is(err, boom) {
		t.Fatalf("a failing fill: %v, %v", x, err)
	}
	if x, err := m.Fill(0, func(dst []byte) error { return nil }); err != nil || x.Len() != 0 {
		t.Fatalf("empty fill: %v, %v", x, err)
	}
	if st := m.Stats(); st.Made != 2 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMaxFilesKeepsBatchesInMemoryPastTheCap: past the cap on live memfds
// a batch stays in memory (with the reason), and once the memfds held are
// dropped, memfds are made again.
func TestMaxFilesKeepsBatchesInMemoryPastTheCap(t *testing.T) {
	m := NewMemfds(1<<30, nil)
	m.SetMaxFiles(3)
	var held []*Blob
	for i := 0; i < 3; i++ {
		x, err := m.New([]byte("abc"))
		if err != nil || x.File() == nil {
			t.Fatalf("memfd %d: %v", i, err)
		}
		held = append(held, x)
	}
	x, err := m.New([]byte("abc"))
	if !errors.Is(err, errTooManyFiles) || x.File() != nil {
		t.Fatalf("past the cap: memfd %v, err %v", x.File() != nil, err)
	}
	if d, _ := x.Data(); string(d) != "abc" {
		t.Fatalf("in-memory fallback holds %q", d)
	}
	y, err := m.Fill(3, func(dst []byte) error { copy(dst, "xyz"); return nil })
	if !errors.Is(err, errTooManyFiles) || y.File() != nil {
		t.Fatalf("Fill past the cap: memfd %v, err %v", y.File() != nil, err)
	}
	if d, _ := y.Data(); string(d) != "xyz" {
		t.Fatalf("Fill's in-memory fallback holds %q", d)
	}
	runtime.KeepAlive(held)
	held = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		z, err := m.New([]byte("abc"))
		if err == nil && z.File() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no memfd after dropping the held ones: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Fill buffers are reused across garbage collections, and the list keeps
// at most maxKept buffers and maxKeptSize bytes.
func TestBufListReusesAcrossCollections(t *testing.T) {
	var l bufList
	b := l.get(3 << 20)
	if len(b) != 3<<20 || cap(b) != 3<<20 {
		t.Fatalf("len %d cap %d, want 3 MiB rounded to 1 MiB", len(b), cap(b))
	}
	l.put(b)
	runtime.GC()
	runtime.GC()
	if c := l.get(2 << 20); &c[:1][0] != &b[:1][0] {
		t.Fatal("a kept buffer was not reused after two collections")
	}
	for range 2 * maxKept {
		l.put(make([]byte, 0, 8<<20))
	}
	l.put(make([]byte, 0, maxKeptSize+1))
	if len(l.free) > maxKept || l.bytes > maxKeptSize {
		t.Fatalf("kept %d buffers, %d bytes; bounds %d, %d", len(l.free), l.bytes, maxKept, maxKeptSize)
	}
	var sum int64
	for _, f := range l.free {
		sum += int64(cap(f))
	}
	if sum != l.bytes {
		t.Fatalf("kept bytes %d, counted %d", sum, l.bytes)
	}
	l.put(make([]byte, 0, 32<<20)) // bigger than every kept one: replaces the smallest
	if got := cap(l.free[len(l.free)-1]); got != 32<<20 || l.bytes > maxKeptSize {
		t.Fatalf("last kept cap %d, bytes %d", got, l.bytes)
	}
}

func TestMemfdsKnowTheLargestMade(t *testing.T) {
	m := NewMemfds(1<<30, nil)
	for _, n := range []int{300, 5000, 40} {
		x, err := m.New(make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
	}
	if got := m.Stats().Largest; got != 5000 {
		t.Fatalf("largest %d, want 5000", got)
	}
}
