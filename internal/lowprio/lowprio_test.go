package lowprio

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadNice reads the calling thread's nice value from /proc.
func threadNice(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	n, err := strconv.Atoi(f[16]) // field 19 of stat(5), counted from state (3)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLowerNicesOnlyTheCallingThread(t *testing.T) {
	before := threadNice(t)
	got := make(chan int, 1)
	go func() {
		if err := Lower(Nice); err != nil {
			t.Error(err)
		}
		got <- threadNice(t)
	}()
	if n := <-got; n != Nice {
		t.Fatalf("lowered thread's nice = %d, want %d", n, Nice)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if n := threadNice(t); n != before {
		t.Fatalf("another thread's nice changed from %d to %d", before, n)
	}
}

func TestEachRunsEveryTaskOnce(t *testing.T) {
	p := New(3, Nice)
	defer p.Close()
	for _, n := range []int{0, 1, 2, 7, 100} {
		counts := make([]atomic.Int32, n)
		if err := p.Each(n, func(i int) error { counts[i].Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
		for i := range counts {
			if c := counts[i].Load(); c != 1 {
				t.Fatalf("n=%d: task %d ran %d times", n, i, c)
			}
		}
	}
}

func TestEachUsesIdlePoolThreadsAtLowPriority(t *testing.T) {
	p := New(2, Nice)
	defer p.Close()
	// Pool threads help only when idle at the time of the call, so under
	// a loaded machine one call may find none ready: try a few.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var mu sync.Mutex
		nices := map[int]int{} // tid -> nice
		err := p.Each(3, func(i int) error {
			mu.Lock()
			nices[unix.Gettid()] = threadNice(t)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond) // long enough for helpers to take the others
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		low := 0
		for _, n := range nices {
			if n == Nice {
				low++
			}
		}
		if low >= 1 && len(nices) >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks ran on threads with nice values %v: no pool thread at %d helped", nices, Nice)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEachJoinsErrorsAndRecoversPanics(t *testing.T) {
	p := New(2, Nice)
	defer p.Close()
	errA := errors.New("task 1 failed")
	err := p.Each(4, func(i int) error {
		switch i {
		case 1:
			return errA
		case 3:
			panic("boom")
		}
		return nil
	})
	if !errors.Is(err, errA) || !strings.Contains(err.Error(), "panic in task 3: boom") {
		t.Fatalf("err = %v, want task 1's error and task 3's panic", err)
	}
}

func TestNestedEachAndBusyPoolDoNotDeadlock(t *testing.T) {
	p := New(2, Nice)
	defer p.Close()
	var total atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- p.Each(4, func(i int) error {
			return p.Each(4, func(j int) error { total.Add(1); return nil })
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nested Each deadlocked")
	}
	if total.Load() != 16 {
		t.Fatalf("ran %d inner tasks, want 16", total.Load())
	}
}

func TestEachAfterCloseAndNilPoolRunInCaller(t *testing.T) {
	p := New(2, Nice)
	p.Close()
	var nilPool *Pool
	for _, pool := range []*Pool{p, nilPool} {
		var n atomic.Int32
		if err := pool.Each(5, func(int) error { n.Add(1); return nil }); err != nil || n.Load() != 5 {
			t.Fatalf("Each ran %d of 5 tasks, err %v", n.Load(), err)
		}
	}
}

func TestProcs(t *testing.T) {
	if got := Procs(2, 6); got != 8 {
		t.Fatalf("Procs(2, 6) = %d, want 8", got)
	}
	if got := Procs(64, 6); got != 64 {
		t.Fatalf("Procs(64, 6) = %d, want 64", got)
	}
}
