package thp

import (
	"os"
	"strings"
	"testing"
)

func flagged(t *testing.T, flag string) int64 {
	t.Helper()
	n, err := Marked(os.Getpid(), flag)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAnonRW(t *testing.T) {
	for _, c := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"c000000000-c004000000 rw-p 00000000 00:00 0 ", 0xc000000000, 0xc004000000, true},
		{"7f0000000000-7f0000400000 rw-p 00000000 00:00 0", 0x7f0000000000, 0x7f0000400000, true},
		{"55e06abd9000-55e06abdb000 r--p 00000000 fe:00 247026                     /usr/bin/cat", 0, 0, false},
		{"7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]", 0, 0, false},
		{"7f00-7f10 r-xp 00000000 00:00 0", 0, 0, false},
		{"7f10-7f00 rw-p 00000000 00:00 0", 0, 0, false},
		{"garbage", 0, 0, false},
		// Go ≥ 1.25 names its mappings where the kernel lets it.
		{"c000000000-c004000000 rw-p 00000000 00:00 0                          [anon: Go: heap]", 0xc000000000, 0xc004000000, true},
		{"7fc19d600000-7fc19f600000 rw-p 00000000 00:00 0                      [anon: Go: heap index]", 0, 0, false},
		{"7fc19d600000-7fc19f600000 rw-p 00000000 00:00 0                      [anon: cgo buffer]", 0, 0, false},
	} {
		s, e, ok := anonRW(c.line)
		if s != c.start || e != c.end || ok != c.ok {
			t.Errorf("anonRW(%q) = %#x, %#x, %v; want %#x, %#x, %v", c.line, s, e, ok, c.start, c.end, c.ok)
		}
	}
}

func TestDisabledBy(t *testing.T) {
	for godebug, want := range map[string]bool{
		"madvdontneed=1,disablethp=1":  true,
		"disablethp=2":                 true, // any integer but 0, as the runtime reads it
		"disablethp=1,disablethp=0":    false,
		"disablethp=0,disablethp=1":    true, // the last one wins
		"disablethp=0":                 false,
		"":                             false,
		"madvdontneed=1, disablethp=1": false, // the runtime does not trim: " disablethp" is another key
		"disablethp=yes":               false, // not an integer: ignored
	} {
		if got := DisabledBy(godebug); got != want {
			t.Errorf("DisabledBy(%q) = %v, want %v", godebug, got, want)
		}
	}
}

func TestAvailablePolicy(t *testing.T) {
	const on, off, madv = "[always] madvise never\n", "always madvise [never]\n", "always [madvise] never\n"
	const status = "Name:\tzenithfs\nTHP_enabled:\t1\nThreads:\t9\n"
	for _, c := range []struct {
		top, perSize, status string
		want                 bool
	}{
		{madv, "", status, true},
		{on, "", status, true},
		{off, "", status, false},
		{madv, "always inherit madvise [never]\n", status, false}, // the 2 MiB size is off
		{off, "always [inherit] madvise never\n", status, false},
		{off, "always inherit [madvise] never\n", status, true}, // the 2 MiB size overrides
		{madv, "always [inherit] madvise never\n", status, true},
		{madv, "", "Name:\tzenithfs\nTHP_enabled:\t0\n", false}, // PR_SET_THP_DISABLE
		{"", "", status, false},
	} {
		if got := available(c.top, c.perSize, c.status); got != c.want {
			t.Errorf("available(%q, %q, %q) = %v, want %v", c.top, c.perSize, c.status, got, c.want)
		}
	}
}

// Grow leaves a heap mapping advised huge; a Watcher that sees the heap's
// resident memory run past what the runtime holds takes the advice back.
func TestGrowAdvisesAndWatcherTakesItBack(t *testing.T) {
	if !Available() {
		t.Skip("transparent huge pages are off (never) or absent on this machine")
	}
	n, err := Grow(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if n < 64<<20 {
		t.Fatalf("Grow(64 MiB) advised %d bytes", n)
	}
	if got := flagged(t, "hg"); got < 64<<20 {
		t.Fatalf("after Grow(64 MiB), %d bytes of mappings are advised huge", got)
	}
	w := NewWatcher()
	if err := w.Check(0); err != nil || w.Off() { // nothing resident: no alarm
		t.Fatal(err)
	}
	err = w.Check(1 << 40) // far more resident than the runtime holds
	if err == nil || !strings.Contains(err.Error(), "advice taken back") {
		t.Fatalf("Check with an inflated heap: %v", err)
	}
	if got := flagged(t, "hg"); got != 0 {
		t.Fatalf("after the watcher gave up, %d bytes are still advised huge", got)
	}
	if got := flagged(t, "nh"); got < 64<<20 {
		t.Fatalf("after the watcher gave up, only %d bytes are advised not huge", got)
	}
	if !w.Off() {
		t.Fatal("a watcher that took its advice back is not Off")
	}
	if err := w.Check(1 << 40); err != nil {
		t.Fatalf("a watcher that gave up checked again: %v", err)
	}
}
