package thp

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// flagged returns the bytes of this process's mappings of at least
// MinMapping whose VmFlags (/proc/self/smaps) carry flag ("hg": advised
// huge, "nh": advised not huge).
func flagged(t *testing.T, flag string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total, size int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if s, e, ok := anonRW(line); ok {
			size = int64(e - s)
			continue
		}
		if strings.HasPrefix(line, "VmFlags:") {
			if size >= MinMapping && strings.Contains(line+" ", " "+flag+" ") {
				total += size
			}
			size = 0
		}
	}
	return total
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
	} {
		s, e, ok := anonRW(c.line)
		if s != c.start || e != c.end || ok != c.ok {
			t.Errorf("anonRW(%q) = %#x, %#x, %v; want %#x, %#x, %v", c.line, s, e, ok, c.start, c.end, c.ok)
		}
	}
}

func TestDisabled(t *testing.T) {
	t.Setenv("GODEBUG", "madvdontneed=1, disablethp=1")
	if !Disabled() {
		t.Error("GODEBUG disablethp=1 not seen")
	}
	t.Setenv("GODEBUG", "disablethp=0")
	if Disabled() {
		t.Error("GODEBUG disablethp=0 taken for 1")
	}
}

func thpAvailable(t *testing.T) {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		t.Skipf("no transparent huge pages in this kernel: %v", err)
	}
	if strings.Contains(string(b), "[never]") {
		t.Skip("transparent huge pages are off (never) on this machine")
	}
}

// Grow leaves a heap mapping advised huge; a Watcher that sees the heap's
// resident memory run past what the runtime holds takes the advice back.
func TestGrowAdvisesAndWatcherTakesItBack(t *testing.T) {
	thpAvailable(t)
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
	if err := w.Check(0); err != nil { // nothing resident: no alarm
		t.Fatal(err)
	}
	err = w.Check(1 << 40) // far more resident than the runtime holds
	if err == nil || !strings.Contains(err.Error(), "small pages") {
		t.Fatalf("Check with an inflated heap: %v", err)
	}
	if got := flagged(t, "hg"); got != 0 {
		t.Fatalf("after the watcher gave up, %d bytes are still advised huge", got)
	}
	if got := flagged(t, "nh"); got < 64<<20 {
		t.Fatalf("after the watcher gave up, only %d bytes are advised not huge", got)
	}
	if err := w.Check(1 << 40); err != nil {
		t.Fatalf("a watcher that gave up checked again: %v", err)
	}
}
