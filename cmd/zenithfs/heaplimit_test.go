package main

import (
	"runtime/debug"
	"testing"
)

func TestHeapLimitLeavesRoomForMemfdsAndTheBinary(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	const mib = 1 << 20
	cur := func() int64 { return debug.SetMemoryLimit(-1) / mib }
	h := newHeapLimit(600*mib, 100*mib)
	if cur() != 600 {
		t.Fatalf("limit %d MiB at start, want 600", cur())
	}
	h.setMemfds(300 * mib)
	h.setOther(40 * mib)
	if cur() != 260 {
		t.Fatalf("limit %d MiB with 300 MiB of memfds and 40 resident outside the heap, want 260", cur())
	}
	h.setOther(42 * mib) // a change under 4 MiB is skipped
	if cur() != 260 {
		t.Fatalf("limit %d MiB after a 2 MiB change, want it left at 260", cur())
	}
	h.setMemfds(550 * mib)
	if cur() != 100 {
		t.Fatalf("limit %d MiB, want the floor, 100", cur())
	}
	h.setMemfds(0)
	if cur() != 558 {
		t.Fatalf("limit %d MiB once the memfds are gone, want 558", cur())
	}
}

func TestSelfStatm(t *testing.T) {
	rss, shared, err := selfStatm()
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || shared <= 0 || shared > rss {
		t.Fatalf("rss %d, shared %d: want 0 < shared ≤ rss", rss, shared)
	}
}
