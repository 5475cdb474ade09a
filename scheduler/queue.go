package scheduler

import (
	"sort"
	"time"
)

// queued is a pending job as the planner sees it.
type queued struct {
	name  string
	gpus  int
	limit time.Duration // 0: none
}

// holding is a running (or starting) job's GPU count and the latest time it
// can end: start + time limit, or zero when it has no limit.
type holding struct {
	gpus int
	end  time.Time
}

// plan picks, from pending (already in queue order: priority descending,
// then submit order), the jobs to start now given free GPUs and the jobs
// holding the others. It is conservative ("EASY") backfill:
//
//   - Jobs start in queue order while they fit in the free GPUs.
//   - The first job that does not fit is blocked and gets a reservation: the
//     shadow time is the earliest moment enough GPUs are certain to be free
//     for it, judged by the running jobs' time limits (a job without a limit
//     may run forever). The GPUs free at that moment beyond its need are
//     extra.
//   - A later job may start ahead of it only if it fits in the free GPUs and
//     either its own time limit ends it before the shadow time, or it uses
//     only extra GPUs. Either way the blocked job's start is not delayed.
//
// Only the first blocked job holds a reservation; jobs behind it start only
// through backfill.
func plan(now time.Time, free int, pending []queued, running []holding) []string {
	var out []string
	running = append([]holding(nil), running...)
	blocked := false
	var shadow time.Time // zero: never certain (unbounded)
	extra := 0
	for _, q := range pending {
		if !blocked {
			if q.gpus <= free {
				out = append(out, q.name)
				free -= q.gpus
				running = append(running, holding{gpus: q.gpus, end: endOf(now, q.limit)})
				continue
			}
			blocked = true
			sort.SliceStable(running, func(i, j int) bool { return before(running[i].end, running[j].end) })
			avail := free
			for _, r := range running {
				avail += r.gpus
				if avail >= q.gpus {
					shadow = r.end
					extra = avail - q.gpus
					break
				}
			}
			continue
		}
		if q.gpus > free {
			continue
		}
		endsFirst := q.limit > 0 && (shadow.IsZero() || !now.Add(q.limit).After(shadow))
		if endsFirst || q.gpus <= extra {
			out = append(out, q.name)
			free -= q.gpus
			if !endsFirst {
				extra -= q.gpus
			}
		}
	}
	return out
}

func endOf(now time.Time, limit time.Duration) time.Time {
	if limit <= 0 {
		return time.Time{}
	}
	return now.Add(limit)
}

// before orders end times, a zero (unbounded) end last.
func before(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return false
	case b.IsZero():
		return true
	}
	return a.Before(b)
}
