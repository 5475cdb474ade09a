package dataset

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// blockMemo keeps the files of built blocks of block-shuffled views: a
// block's K batches decoded, their rows permuted and cut back into files.
// It belongs to the dataset, not to a view: the W ranks of a block shuffle
// are W views that read the same blocks (and npz and Arrow views of one
// shuffle too), and each block is built once for all of them.
//
// Its memory is bounded by max. One block is built at a time (its
// batches are decoded in parallel), charged twice its estimate while it
// is (the concatenated block and the files cut from it); a built block is
// charged its size. To make room, built blocks are dropped least recently
// used first: those whose every file has been handed out, then those no
// file of which was handed out for a while (stale: the readers moved on;
// a node serving only some ranks of a shuffle never hands out every file
// of a block), and, only for a build a reader waits on (its context
// carries a build notice, as fs/ gives every read), any other. A
// speculative build (prefetch) that would have to drop a block the
// readers are still cutting files from is not done at all (errNoRoom, a
// skip to prefetch): the readers build it when they get there. Every
// change of the charge is passed to reserve, so the caller can take as
// much from another share of the memory budget (cmd/zenithfs shrinks the
// read cache by it). View refuses a block size whose working set (one
// block being read, the next being built) does not fit in max.
type blockMemo struct {
	max     int64
	reserve func(delta int64)
	stale   time.Duration // a block untouched this long may go for a prefetch

	mu       sync.Mutex
	calls    map[string]*blockCall
	ll       *list.List    // built blocks, front = most recent
	bytes    int64         // charged now
	building bool          // a block is being built
	changed  chan struct{} // closed (and replaced) when room may have freed
	builds   uint64
}

type blockCall struct {
	key    string
	done   chan struct{}
	recs   []arrow.RecordBatch
	err    error
	bytes  int64         // charged for this block
	elem   *list.Element // in ll once built
	served []bool        // files handed out at least once
	left   int           // files never handed out
	used   time.Time     // built, or a file last handed out
	spec   bool          // built for prefetch (no reader waits on it)
}

// staleBlock is blockMemo.stale by default: the readers of a shuffle read
// a block's files together, so a block none of them touched for a second
// is behind them.
const staleBlock = time.Second

// errNoRoom is a speculative block build skipped for want of room.
var errNoRoom = skipError("no room for another built block now: the readers build it when they reach it")

// skipError is an error that tells prefetch/ a speculative build was
// skipped, not failed (its Skipped method): no error is counted or logged.
type skipError string

func (e skipError) Error() string { return string(e) }

// Skipped marks e as a skip.
func (e skipError) Skipped() bool { return true }

func newBlockMemo(max int64, reserve func(int64)) *blockMemo {
	if reserve == nil {
		reserve = func(int64) {}
	}
	return &blockMemo{max: max, reserve: reserve, stale: staleBlock, calls: map[string]*blockCall{}, ll: list.New(), changed: make(chan struct{})}
}

// file returns file i of the block under key, building the block with
// build (once, however many views ask at once) on a miss. estimate gives
// the block's decoded size from its batches' sizes; it is asked only on a
// miss.
func (m *blockMemo) file(ctx context.Context, key string, i int, estimate func() int64, build func(context.Context) ([]arrow.RecordBatch, error)) (arrow.RecordBatch, error) {
	demand := onDemand(ctx)
	retried := false
	for {
		m.mu.Lock()
		c, ok := m.calls[key]
		if ok && c.elem != nil {
			m.ll.MoveToFront(c.elem)
		}
		if !ok && m.building {
			ch := m.changed
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		var est int64
		if !ok {
			est = estimate()
		}
		if !ok && !demand && m.evictable(time.Now()) < m.bytes+2*est-m.max {
			m.mu.Unlock()
			return nil, errNoRoom
		}
		if !ok {
			c = &blockCall{key: key, done: make(chan struct{}), bytes: 2 * est, spec: !demand}
			m.calls[key] = c
			m.builds++
			m.building = true
			m.chargeLocked(c.bytes, c, demand)
		}
		m.mu.Unlock()
		if !ok {
			recs, err := build(ctx)
			m.finish(c, recs, err)
		} else {
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if c.err != nil && ctx.Err() == nil && (errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded)) {
			continue // the builder gave up; this caller still wants it
		}
		if c.err != nil && ok && c.spec && demand && !retried {
			// A prefetch's failure (it may have started during an outage
			// since ended) is not this reader's answer until it tried.
			retried = true
			continue
		}
		if c.err != nil {
			return nil, c.err
		}
		if i < 0 || i >= len(c.recs) {
			return nil, fmt.Errorf("block %s: file %d of %d", key, i, len(c.recs))
		}
		m.mu.Lock()
		c.used = time.Now()
		if !c.served[i] {
			c.served[i] = true
			c.left--
			if c.left == 0 {
				m.notifyLocked()
			}
		}
		m.mu.Unlock()
		return c.recs[i], nil
	}
}

// finish records the outcome of c's build: a built block is kept (and
// charged its size), a failed one forgotten.
func (m *blockMemo) finish(c *blockCall, recs []arrow.RecordBatch, err error) {
	m.mu.Lock()
	c.recs, c.err = recs, err
	was := c.bytes
	c.bytes = 0
	if err != nil {
		if m.calls[c.key] == c {
			delete(m.calls, c.key)
		}
	} else {
		for _, r := range recs {
			c.bytes += recordBytes(r)
		}
		c.served, c.left, c.used = make([]bool, len(recs)), len(recs), time.Now()
		c.elem = m.ll.PushFront(c)
	}
	m.building = false
	m.chargeLocked(c.bytes-was, c, false)
	m.notifyLocked()
	m.mu.Unlock()
	close(c.done)
}

// evictable is what dropping the built blocks a speculative build may
// drop would free: those whose every file has been handed out, and the
// stale. m.mu is held.
func (m *blockMemo) evictable(now time.Time) int64 {
	var n int64
	for e := m.ll.Front(); e != nil; e = e.Next() {
		if c := e.Value.(*blockCall); m.dropFor(c, now, 1) {
			n += c.bytes
		}
	}
	return n
}

// dropFor reports whether c may be dropped at eviction level: 0 only
// when its every file has been handed out, 1 also when stale, 2 always.
func (m *blockMemo) dropFor(c *blockCall, now time.Time, level int) bool {
	return c.left == 0 || level >= 1 && now.Sub(c.used) >= m.stale || level >= 2
}

// chargeLocked adds delta to the charge and, while it is over max, drops
// built blocks other than keep, least recently used first: those whose
// every file has been handed out, then the stale, then (all: a reader
// waits) any. It tells reserve the net change. m.mu is held.
func (m *blockMemo) chargeLocked(delta int64, keep *blockCall, all bool) {
	was := m.bytes
	m.bytes += delta
	now := time.Now()
	top := 1
	if all {
		top = 2
	}
	for level := 0; level <= top; level++ {
		for e := m.ll.Back(); e != nil && m.bytes > m.max; {
			c := e.Value.(*blockCall)
			prev := e.Prev()
			if c != keep && m.dropFor(c, now, level) {
				m.ll.Remove(e)
				c.elem = nil
				if m.calls[c.key] == c {
					delete(m.calls, c.key)
				}
				m.bytes -= c.bytes
				c.bytes = 0
			}
			e = prev
		}
	}
	if m.bytes != was {
		m.reserve(m.bytes - was)
	}
}

// notifyLocked wakes the builds waiting for their turn or for room.
func (m *blockMemo) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// onDemand reports whether a reader waits on the build under ctx (fs/
// gives every read a build notice; a prefetch worker's build has none).
func onDemand(ctx context.Context) bool {
	_, ok := ctx.Value(buildNoticeKey{}).(func())
	return ok
}

// BlockStats are the counters of a dataset's built blocks (block-shuffled
// views).
type BlockStats struct {
	Builds uint64 `json:"builds"` // blocks built
	Bytes  int64  `json:"bytes"`  // memory charged to blocks now
	Max    int64  `json:"max"`    // the most they may hold
}

// BlockStats returns the counters of the dataset's built blocks.
func (d *Dataset) BlockStats() BlockStats {
	m := d.blocks
	m.mu.Lock()
	defer m.mu.Unlock()
	return BlockStats{Builds: m.builds, Bytes: m.bytes, Max: m.max}
}
