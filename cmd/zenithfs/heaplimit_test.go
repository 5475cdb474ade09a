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
	h := newHeapLimit(600*mib+1000, 100*mib, 3, 6*mib, 50*mib)
	if cur() != 600 {
		t.Fatalf("limit %d MiB at start, want 600 (rounded down to 4 MiB)", cur())
	}
	h.setMemfds(300 * mib)
	h.set(300*mib, 40*mib, 0)
	if cur() != 260 {
		t.Fatalf("limit %d MiB with 300 MiB of memfds and 40 resident outside the heap, want 260", cur())
	}
	h.set(300*mib, 42*mib, 0) // the target, 258 MiB, rounds down to 256
	if cur() != 256 {
		t.Fatalf("limit %d MiB for a target of 258, want 256", cur())
	}
	h.set(300*mib, 41*mib, 0) // 259: still the 256 step
	if cur() != 256 {
		t.Fatalf("limit %d MiB for a target of 259, want 256", cur())
	}
	h.setMemfds(300 * mib)
	h.setMemfds(550 * mib)
	if cur() != 100 {
		t.Fatalf("limit %d MiB, want the floor, 100", cur())
	}
	h.setMemfds(0)
	if cur() != 556 {
		t.Fatalf("limit %d MiB once the memfds are gone, want 556 (600 − 41, rounded down)", cur())
	}
	// Three builders of batch files up to 10 MiB: 30 MiB of memfds about
	// to be made, 6 absorbed by the headroom, 24 kept.
	h.set(0, 41*mib, 10*mib)
	if cur() != 532 {
		t.Fatalf("limit %d MiB with 3 builders of 10 MiB batches, want 532 (600 − 41 − 24, rounded down)", cur())
	}
	h.set(0, 41*mib, 2*mib) // 6 MiB: all absorbed
	if cur() != 556 {
		t.Fatalf("limit %d MiB with 3 builders of 2 MiB batches, want 556 (nothing kept)", cur())
	}
	h.set(0, 41*mib, 100*mib) // 294 MiB wanted, 50 at most
	if cur() != 508 {
		t.Fatalf("limit %d MiB with 3 builders of 100 MiB batches, want 508 (600 − 41 − 50 at most, rounded down)", cur())
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

// During a scan the limit counts the memfds the shrunk cache and the
// prefetched batches may hold, however few are live.
func TestHeapLimitCountsAScansMemfds(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	const mib = 1 << 20
	cur := func() int64 { return debug.SetMemoryLimit(-1) / mib }
	h := newHeapLimit(600*mib, 100*mib, 1, 0, 0)
	h.set(20*mib, 40*mib, 0)
	if cur() != 540 {
		t.Fatalf("limit %d MiB, want 540", cur())
	}
	h.setMemfdFloor(168 * mib)
	if cur() != 392 {
		t.Fatalf("limit %d MiB with 168 MiB of memfds counted at least, want 392", cur())
	}
	h.set(200*mib, 40*mib, 0) // more live than the floor: those count
	if cur() != 360 {
		t.Fatalf("limit %d MiB with 200 MiB live over a 168 MiB floor, want 360", cur())
	}
	h.setMemfdFloor(0)
	h.set(20*mib, 40*mib, 0)
	if cur() != 540 {
		t.Fatalf("limit %d MiB after the scan, want 540", cur())
	}
	// The room kept for the memfds of batches being built is inside the
	// floor (the prefetch share): not counted twice.
	h = newHeapLimit(600*mib, 100*mib, 4, 0, 100*mib)
	h.set(20*mib, 40*mib, 10*mib) // 4 builders × 10 MiB
	if cur() != 500 {
		t.Fatalf("limit %d MiB with 40 MiB kept for builds, want 500", cur())
	}
	h.setMemfdFloor(168 * mib)
	if cur() != 392 {
		t.Fatalf("limit %d MiB in a scan with 40 MiB kept for builds, want 392 (the floor covers them)", cur())
	}
}
