// Package thp opts this process's Go heap into transparent huge pages.
//
// Building a batch allocates tens of megabytes of fresh Arrow buffers, and
// every first touch of a 4 KiB page is a page fault: on virtual machines
// where a fault is expensive that is most of a fresh daemon's CPU. The Go
// runtime leaves its heap to the system's THP policy, which on most
// distributions is "madvise": huge pages only where a mapping asks. The
// daemon asks, in three parts:
//
//   - Grow maps a stretch of heap and marks it MADV_HUGEPAGE before anything
//     touches it (a 2 MiB range already touched stays on small pages), then
//     hands it back to the kernel untouched; later allocations land in it.
//   - Advise marks the anonymous read-write mappings the runtime made for
//     its heap; a Watcher calls it again whenever the runtime maps more.
//   - The Watcher also takes the advice back if the heap's resident memory
//     outgrows what the runtime holds (see Watcher).
//
// The system's policy still decides (Available): with
// /sys/kernel/mm/transparent_hugepage/enabled set to "never" the advice
// does nothing. The caller decides whether to ask at all; DisabledBy reads
// GODEBUG=disablethp=1, Go's own switch to keep its heap off huge pages.
package thp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MinMapping is the smallest mapping Advise marks: the runtime maps its
// heap in steps of at least 4 MiB; smaller anonymous mappings (thread
// stacks, runtime metadata) are left alone.
const MinMapping = 4 << 20

// Available reports whether the system's THP policy lets a mapping ask
// for huge pages (/sys/kernel/mm/transparent_hugepage/enabled is "always"
// or "madvise").
func Available() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && !strings.Contains(string(b), "[never]")
}

// DisabledBy reports whether a GODEBUG value asks to keep the heap off
// huge pages (disablethp=1, Go's own switch).
func DisabledBy(godebug string) bool {
	for _, kv := range strings.Split(godebug, ",") {
		if strings.TrimSpace(kv) == "disablethp=1" {
			return true
		}
	}
	return false
}

// Marked returns the bytes of process pid's mappings of at least
// MinMapping whose VmFlags (/proc/PID/smaps) carry flag: "hg" for advised
// huge, "nh" for advised not huge.
func Marked(pid int, flag string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, fmt.Errorf("thp: %w", err)
	}
	var total, size int64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && !strings.HasSuffix(f[0], ":") {
			if lo, hi, ok := rangeOf(f[0]); ok { // a mapping's header line
				size = int64(hi - lo)
			}
			continue
		}
		if strings.HasPrefix(line, "VmFlags:") {
			if size >= MinMapping && strings.Contains(line+" ", " "+flag+" ") {
				total += size
			}
			size = 0
		}
	}
	return total, sc.Err()
}

// Advise marks every anonymous private read-write mapping of at least
// MinMapping bytes MADV_HUGEPAGE and returns how many bytes it marked.
// Marking a mapping again is harmless.
func Advise() (int64, error) {
	var total int64
	err := madviseAnon(unix.MADV_HUGEPAGE, func(n int64) { total += n })
	return total, err
}

// madviseAnon applies advice to every anonymous private read-write mapping
// of at least MinMapping bytes, calling counted (if not nil) with each
// mapping's size.
func madviseAnon(advice int, counted func(int64)) error {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return fmt.Errorf("thp: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		start, end, ok := anonRW(sc.Text())
		if !ok || end-start < MinMapping {
			continue
		}
		// A raw syscall: the range is a mapping of this process, not Go
		// memory a slice could point at.
		_, _, e := unix.Syscall(unix.SYS_MADVISE, start, end-start, uintptr(advice))
		if e == unix.ENOMEM { // unmapped since /proc/self/maps was read
			continue
		}
		if e != 0 {
			return fmt.Errorf("thp: madvise %#x-%#x: %w", start, end, e)
		}
		if counted != nil {
			counted(int64(end - start))
		}
	}
	return sc.Err()
}

// anonRW parses one line of /proc/self/maps and reports the range of an
// anonymous (no file, no name) private read-write mapping.
func anonRW(line string) (start, end uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) != 5 || f[1] != "rw-p" || f[4] != "0" {
		return 0, 0, false
	}
	return rangeOf(f[0])
}

// rangeOf parses a maps address range "start-end" (hexadecimal).
func rangeOf(r string) (start, end uintptr, ok bool) {
	lo, hi, found := strings.Cut(r, "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}

// Watcher re-advises when the runtime has mapped more memory since it last
// did (a grown heap is a new mapping, not yet marked), and takes the advice
// back if the heap's resident memory outgrows what the runtime holds.
//
// That is the known hazard of huge pages under a memory limit: the runtime
// returns free pages to the kernel (MADV_DONTNEED), and khugepaged, which
// scans advised mappings, may collapse a 2 MiB range back into one huge
// page while any of its pages is in use, making resident again what the
// runtime counts as released. Past Slack bytes of that, Check marks the
// mappings MADV_NOHUGEPAGE, returns the free memory again, and stops.
type Watcher struct {
	sample []metrics.Sample
	last   uint64
	off    bool
}

// Slack is how far the heap's resident memory may exceed what the runtime
// holds before a Watcher takes its advice back.
const Slack = 32 << 20

// NewWatcher returns a Watcher that has not advised yet.
func NewWatcher() *Watcher {
	return &Watcher{sample: []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}}
}

// Check advises if the runtime's mapped memory grew by MinMapping or more
// since the last advice (or there was none). anonRSS is the process's
// resident anonymous memory (statm resident − shared), or a negative value
// when unknown; if it exceeds the runtime's mapped, unreleased memory by
// more than Slack, Check takes the advice back and returns an error saying
// so, and does nothing after that.
func (w *Watcher) Check(anonRSS int64) error {
	if w.off {
		return nil
	}
	metrics.Read(w.sample)
	if w.sample[0].Value.Kind() != metrics.KindUint64 || w.sample[1].Value.Kind() != metrics.KindUint64 {
		return nil
	}
	mapped, released := w.sample[0].Value.Uint64(), w.sample[1].Value.Uint64()
	if held := int64(mapped - released); anonRSS > held+Slack {
		w.off = true
		err := madviseAnon(unix.MADV_NOHUGEPAGE, nil)
		debug.FreeOSMemory()
		return errors.Join(fmt.Errorf("thp: heap resident %d MiB, %d MiB more than the runtime holds (khugepaged collapsed released pages): heap back on small pages",
			anonRSS>>20, (anonRSS-held)>>20), err)
	}
	if w.last != 0 && mapped < w.last+MinMapping {
		return nil
	}
	w.last = mapped
	_, err := Advise()
	return err
}

// Grow maps n bytes of heap for the runtime to allocate from later, and
// advises it before anything touches it: a page the heap has already
// touched stays small, and the runtime touches new memory as soon as it
// maps it for an allocation, before a Watcher could see the mapping. The
// memory is handed back to the kernel at once (untouched, it was never
// resident); the mapping, and its advice, stay.
func Grow(n int) (int64, error) {
	b := make([]byte, n)
	advised, err := Advise()
	runtime.KeepAlive(b)
	b = nil
	debug.FreeOSMemory()
	return advised, err
}
