// Package lowprio runs the daemon's CPU-heavy background work — decoding
// source segments and building batches ahead of readers — on OS threads
// of lower scheduling priority (a higher nice value), so that FUSE
// requests and the trainer itself preempt it.
//
// Why: a trainer that opens the next batch file while prefetch workers
// keep both cores busy waited milliseconds for its open(2) to be answered
// (bench/local P4: opens of 5–36 ms on a 2-core machine, with every batch
// already built), because the thread that reads the FUSE request had to
// wait for a CPU, and then for a Go P, behind decoding goroutines. With the
// decoding on niced threads whose number is bounded (the prefetch workers
// plus a pool of helper threads), and GOMAXPROCS above that bound
// (Procs), a FUSE request finds a P and preempts the background work.
//
// Go schedules goroutines on threads freely, so a priority is only kept by
// a goroutine locked to its thread: Lower does that for the calling
// goroutine (for good: the thread exits with it), and a Pool keeps such
// goroutines to run tasks on.
package lowprio

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Nice is the nice value of background threads: under contention a
// thread at nice 10 gets about a tenth of the CPU of one at nice 0, so
// background work still progresses beside a busy trainer.
const Nice = 10

// Lower locks the calling goroutine to its OS thread and gives the thread
// the nice value nice. The goroutine keeps the thread until it exits, and
// the thread exits with it (it is never handed to other goroutines). On
// Linux setpriority with PRIO_PROCESS and 0 applies to the calling thread
// only.
func Lower(nice int) error {
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, nice); err != nil {
		return fmt.Errorf("setpriority %d: %w", nice, err)
	}
	return nil
}

// Pool is a fixed set of low-priority threads that help with Each calls.
type Pool struct {
	tasks   chan func()
	wg      sync.WaitGroup
	threads int
	closeMu sync.RWMutex
	closed  bool
}

// New starts a pool of threads goroutines, each on its own thread at nice
// value nice. A pool of 0 threads runs every task in the caller.
func New(threads, nice int) *Pool {
	p := &Pool{tasks: make(chan func()), threads: threads}
	for range threads {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = Lower(nice) // without a lower priority it still helps
			for t := range p.tasks {
				t()
			}
		}()
	}
	return p
}

// Threads is the number of pool threads.
func (p *Pool) Threads() int { return p.threads }

// Close stops the pool's threads once they finish their tasks. Each calls
// after Close run in the caller.
func (p *Pool) Close() {
	p.closeMu.Lock()
	if !p.closed {
		p.closed = true
		close(p.tasks)
	}
	p.closeMu.Unlock()
	p.wg.Wait()
}

// Each runs task(0) … task(n-1) and returns when all have returned, with
// their errors joined. The caller runs tasks itself and is helped by pool
// threads that are idle at the time (a busy pool never delays it: no task
// waits in a queue for a thread), so Each may be called from a pool task
// or a Lower'ed goroutine without deadlock, and the number of threads
// decoding at once stays bounded by the callers plus the pool. A nil pool
// runs every task in the caller.
func (p *Pool) Each(n int, task func(i int) error) error {
	if n <= 0 {
		return nil
	}
	errs := make([]error, n)
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			errs[i] = runTask(task, i)
		}
	}
	var helpers sync.WaitGroup
	if p != nil && n > 1 {
		p.closeMu.RLock()
	offer:
		for h := 0; h < min(n-1, p.threads) && !p.closed; h++ {
			helpers.Add(1)
			select {
			case p.tasks <- func() { defer helpers.Done(); work() }:
			default: // no idle thread: the caller does the rest
				helpers.Done()
				break offer
			}
		}
		p.closeMu.RUnlock()
	}
	work()
	helpers.Wait()
	return errors.Join(errs...)
}

// runTask runs task(i), turning a panic into that task's error: a pool
// thread must not take the daemon down, and the caller's recovery (the
// prefetch store turns a panicking build into an error) cannot see a
// panic on another goroutine.
func runTask(task func(int) error, i int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in task %d: %v", i, r)
		}
	}()
	return task(i)
}

// Procs is the GOMAXPROCS that leaves Ps for request handling while busy
// threads hold theirs: the cores, or the busy threads (background
// workers and pool threads) plus room for two more, whichever is more.
func Procs(cores, busy int) int {
	return max(cores, busy+2)
}
