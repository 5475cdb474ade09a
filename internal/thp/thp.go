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
// /sys/kernel/mm/transparent_hugepage/enabled set to "never" (or the 2 MiB
// size's own policy, or a process with THP disabled) the advice does
// nothing. The caller decides whether to ask at all; DisabledBy reads
// GODEBUG's disablethp, Go's own switch to keep its heap off huge pages.
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

// Available reports whether huge pages can back this process's advised
// mappings: the system policy for 2 MiB pages lets a mapping ask
// (/sys/kernel/mm/transparent_hugepage/enabled, or on Linux ≥ 6.8 its
// hugepages-2048kB/enabled unless that says "inherit", is "always" or
// "madvise"), and the process has not turned THP off for itself
// (prctl PR_SET_THP_DISABLE: THP_enabled 0 in /proc/self/status).
func Available() bool {
	const sys = "/sys/kernel/mm/transparent_hugepage/"
	top, err := os.ReadFile(sys + "enabled")
	if err != nil {
		return false
	}
	perSize, _ := os.ReadFile(sys + "hugepages-2048kB/enabled")
	status, _ := os.ReadFile("/proc/self/status")
	return available(string(top), string(perSize), string(status))
}

// available is Available's decision from the contents of the system
// policy file, the 2 MiB size's policy file ("" when absent) and
// /proc/self/status.
func available(top, perSize, status string) bool {
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "THP_enabled" && strings.TrimSpace(v) == "0" {
			return false
		}
	}
	policy := selected(perSize)
	if policy == "" || policy == "inherit" {
		policy = selected(top)
	}
	return policy == "always" || policy == "madvise"
}

// selected is the bracketed choice of a sysfs policy file
// ("always [madvise] never" → "madvise"), or "".
func selected(file string) string {
	_, rest, ok := strings.Cut(file, "[")
	if !ok {
		return ""
	}
	v, _, ok := strings.Cut(rest, "]")
	if !ok {
		return ""
	}
	return v
}

// DisabledBy reports whether a GODEBUG value keeps the heap off huge
// pages the way the runtime reads it: the last disablethp setting wins,
// and any integer but 0 disables.
func DisabledBy(godebug string) bool {
	disabled := false
	for _, kv := range strings.Split(godebug, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != "disablethp" {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil {
			disabled = n != 0
		}
	}
	return disabled
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

// madviseAnon applies advice to every mapping of at least MinMapping bytes
// that anonRW takes for the heap, calling counted (if not nil) with each
// advised mapping's size. A mapping it fails on does not stop it: the
// errors are returned together.
func madviseAnon(advice int, counted func(int64)) error {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return fmt.Errorf("thp: %w", err)
	}
	var errs []error
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
			errs = append(errs, fmt.Errorf("thp: madvise %#x-%#x: %w", start, end, e))
			continue
		}
		if counted != nil {
			counted(int64(end - start))
		}
	}
	return errors.Join(append(errs, sc.Err())...)
}

// goHeap is the name the Go runtime (1.25 and later) gives its heap
// mappings where the kernel names anonymous mappings
// (CONFIG_ANON_VMA_NAME).
const goHeap = "[anon: Go: heap]"

// anonRW parses one line of /proc/self/maps and reports the range of an
// anonymous private read-write mapping that is the Go heap's: one without
// a name, or named by the runtime as its heap.
func anonRW(line string) (start, end uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) < 5 || f[1] != "rw-p" || f[4] != "0" {
		return 0, 0, false
	}
	if len(f) > 5 && strings.Join(f[5:], " ") != goHeap {
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
// mappings MADV_NOHUGEPAGE, so that khugepaged collapses no more of them,
// and stops (Off). What was collapsed already stays resident until the
// runtime reuses it: the runtime cannot return pages it counts as
// released.
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
		return errors.Join(fmt.Errorf("thp: heap resident %d MiB, %d MiB more than the runtime holds (khugepaged collapsed released pages): huge page advice taken back; what is resident already stays until the heap reuses it",
			anonRSS>>20, (anonRSS-held)>>20), err)
	}
	if w.last != 0 && mapped < w.last+MinMapping {
		return nil
	}
	w.last = mapped
	_, err := Advise()
	return err
}

// Off reports whether the Watcher has taken its advice back and stopped.
func (w *Watcher) Off() bool { return w.off }

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
	if err == nil && advised < int64(n) {
		// The new mapping was not among those advised: /proc/self/maps
		// names it in a way anonRW does not know.
		err = fmt.Errorf("thp: grew the heap by %d MiB but found only %d MiB of it to advise", n>>20, advised>>20)
	}
	return advised, err
}
