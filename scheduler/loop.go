package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// loop is the scheduler's one worker: it dispatches pending jobs when woken,
// and on every heartbeat (and whenever the runner reports an ended attempt)
// polls active attempts and enforces time limits. Only loop starts
// attempts, so two dispatches never race for the same GPUs. Its polls and
// stops run under s.loopCtx, which Close cancels, so that a shutdown does
// not wait for one runner command per job (each up to Slurm's command
// timeout when the controller is down).
func (s *Scheduler) loop() {
	defer close(s.done)
	if s.startGate != nil {
		select {
		case <-s.startGate:
		case <-s.stop:
			return
		}
	}
	ctx := s.loopCtx
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		poll := false
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-s.pollNow:
			poll = true
		case <-tick.C:
			poll = true
		}
		if poll {
			s.pollActive(ctx)
			s.enforceLimits(ctx)
		}
		s.dispatch(ctx)
	}
}

// pollActive polls every attempt with a reference that has not ended, and
// applies what the runner says; it returns the names still active. It
// stops early (counting the rest as active) once ctx is done.
func (s *Scheduler) pollActive(ctx context.Context) []string {
	type act struct {
		name string
		ref  RunRef
	}
	var acts []act
	s.mu.Lock()
	for name, r := range s.jobs {
		if r.Ref != "" && !r.starting && !r.State.Terminal() {
			acts = append(acts, act{name, r.Ref})
		}
	}
	s.mu.Unlock()
	var still []string
	for i, a := range acts {
		if ctx.Err() != nil {
			for _, a := range acts[i:] {
				still = append(still, a.name)
			}
			break
		}
		st, err := s.runner.Poll(ctx, a.ref)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("poll failed", "job", a.name, "err", err)
			}
			still = append(still, a.name)
			continue
		}
		s.mu.Lock()
		if r, ok := s.jobs[a.name]; ok {
			s.apply(r, a.ref, st)
			if !r.State.Terminal() && r.Ref != "" {
				still = append(still, a.name)
			}
		}
		s.mu.Unlock()
	}
	return still
}

// requeuedPrefix starts the reason of a job its runner took back from
// running into its own queue (a Slurm requeue).
const requeuedPrefix = "requeued by "

// apply records a runner status for r's attempt ref; mu held.
//
// A runner that queues attempts itself (Slurm) may take a running attempt
// back into its queue under the same reference (a requeue after a node
// failure or a preemption) and start it again later: the job is then
// PENDING again, without start time or GPUs, and when it runs again its
// start time — from which its time limit counts — is the new start. A new
// start seen without the pending phase in between (it passed between two
// polls, or while the daemon was down) is recorded the same way.
func (s *Scheduler) apply(r *record, ref RunRef, st RunStatus) {
	if r.Ref != ref || r.State.Terminal() {
		return // stale: a newer attempt, or already settled
	}
	switch {
	case st.State == Running:
		restarted := r.State == Running && s.runner.AllocatesGPUs() && st.StartedAt.After(r.StartTime)
		if restarted {
			s.log.Info("job started again by its runner", "job", r.Spec.Name,
				"previous_start", r.StartTime, "start", st.StartedAt.UTC())
		}
		if r.State != Running || restarted {
			r.State = Running
			r.Reason = st.Reason // the queue's reason no longer holds
			if !st.StartedAt.IsZero() {
				r.StartTime = st.StartedAt.UTC()
			} else if r.StartTime.IsZero() {
				r.StartTime = time.Now().UTC()
			}
			if s.runner.AllocatesGPUs() && st.GPUs != nil {
				r.GPUs = st.GPUs
			}
			s.persist(r)
		}
	case st.State.Terminal():
		s.finish(r, st)
	default: // Pending in the runner's own queue (Slurm)
		reason := st.Reason
		if r.State == Running || strings.HasPrefix(r.Reason, requeuedPrefix) {
			reason = requeuedPrefix + s.runner.Name()
			if st.Reason != "" {
				reason += ": " + st.Reason
			}
		}
		if r.State == Running {
			s.log.Info("job requeued by its runner", "job", r.Spec.Name, "reason", st.Reason)
			r.State, r.StartTime, r.GPUs = Pending, time.Time{}, nil
			r.Reason = reason
			s.persist(r)
			return
		}
		if st.Reason != "" && reason != r.Reason {
			r.Reason = reason
			s.persist(r)
		}
	}
}

// finish settles an ended attempt: frees its GPUs, and either queues a retry
// (a FAILED attempt with retries left) or records the final state; mu held.
func (s *Scheduler) finish(r *record, st RunStatus) {
	s.release(r)
	if st.State != Lost || st.ExitCode >= 0 {
		code := st.ExitCode
		r.ExitCode = &code
	}
	final, reason := st.State, st.Reason
	if r.Stop != "" {
		final, reason = r.Stop, r.StopReason
	}
	end := st.EndedAt
	if end.IsZero() {
		end = time.Now()
	}
	r.Ref = ""
	if final == Failed && !r.noRetry && r.Attempts <= r.Spec.Retries {
		r.State = Pending
		r.Reason = fmt.Sprintf("attempt %d failed (%s); retrying", r.Attempts, reason)
		r.StartTime, r.EndTime, r.GPUs = time.Time{}, time.Time{}, nil
		s.persist(r)
		s.log.Info("job attempt failed; retrying", "job", r.Spec.Name, "attempt", r.Attempts, "reason", reason)
		kick(s.wake)
		return
	}
	r.State, r.Reason, r.EndTime = final, reason, end.UTC()
	s.persist(r)
	s.log.Info("job ended", "job", r.Spec.Name, "state", final, "reason", reason)
	kick(s.wake)
}

// release frees the GPUs r holds; mu held.
func (s *Scheduler) release(r *record) {
	for _, g := range r.GPUs {
		if s.held[g] == r.Spec.Name {
			delete(s.held, g)
		}
	}
}

// enforceLimits stops running attempts past their time limit (state
// TIMEOUT), and asks again for stops the runner refused last time — also of
// attempts still pending in the runner's queue (a cancel during a Slurm
// controller outage). It sends no stop once ctx is done.
func (s *Scheduler) enforceLimits(ctx context.Context) {
	now := time.Now()
	type stop struct {
		r   *record
		ref RunRef
	}
	var stops []stop
	s.mu.Lock()
	for _, r := range s.jobs {
		if r.State.Terminal() || r.Ref == "" || r.starting {
			continue
		}
		switch {
		case r.State == Running && r.Stop == "" && r.timeLimit > 0 && now.Sub(r.StartTime) >= r.timeLimit:
			r.Stop, r.StopReason = Timeout, fmt.Sprintf("time limit %s exceeded", r.Spec.TimeLimit)
			s.persist(r)
			s.log.Info("job hit its time limit", "job", r.Spec.Name, "limit", r.Spec.TimeLimit)
		case r.Stop != "" && r.stopFailed: // the last stop was refused: again
		default:
			continue
		}
		stops = append(stops, stop{r, r.Ref})
	}
	s.mu.Unlock()
	for _, st := range stops {
		if ctx.Err() != nil {
			return // shutting down: a persisted stop is asked again after the restart
		}
		if err := s.stopAttempt(ctx, st.r, st.ref); err != nil {
			s.log.Warn("cannot stop job; asking again next round", "job", st.r.Spec.Name, "err", err)
		}
	}
}

// dispatch starts the pending jobs the queue lets run now. Runner
// commands that only ask (FindStarted) run under ctx; Start runs to its
// end even when ctx is cancelled, since a start cut short may have
// launched the attempt anyway. Once Close began, no further start begins.
func (s *Scheduler) dispatch(ctx context.Context) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	now := time.Now()
	finder, _ := s.runner.(Finder)
	var pend, stopped []*record
	for _, r := range s.jobs {
		if r.State != Pending || r.Ref != "" || r.starting {
			continue
		}
		if r.Stop != "" {
			if r.StartKey != "" && finder != nil {
				// An earlier start of this attempt may have launched it:
				// find (and stop) it before the job ends.
				if !now.Before(r.notBefore) {
					stopped = append(stopped, r)
				}
				continue
			}
			// Stopped before any attempt got a reference (its start failed
			// for a while, or the daemon died mid-start): never start it.
			r.State, r.Reason, r.EndTime, r.StartKey = r.Stop, r.StopReason, now.UTC(), ""
			s.persist(r)
			continue
		}
		if !now.Before(r.notBefore) {
			pend = append(pend, r)
		}
	}
	finds := make([]RunRequest, len(stopped))
	for i, r := range stopped {
		r.starting = true
		finds[i] = s.request(r)
	}
	sort.Slice(pend, func(i, j int) bool {
		if pend[i].Spec.Priority != pend[j].Spec.Priority {
			return pend[i].Spec.Priority > pend[j].Spec.Priority
		}
		return pend[i].Seq < pend[j].Seq
	})
	var start []*record
	if s.runner.AllocatesGPUs() {
		start = pend
	} else if len(pend) > 0 {
		start = s.planLocked(pend)
	}
	reqs := make([]RunRequest, len(start))
	for i, r := range start {
		r.starting = true
		resubmit := r.StartKey != ""
		if !resubmit {
			r.StartKey = newStartKey()
		}
		// Stored before Start runs, with the GPUs just planned: a start the
		// daemon does not see end is known to be uncertain after a restart,
		// and an attempt it launched is adopted on the GPUs it got.
		s.persist(r)
		reqs[i] = s.request(r)
		reqs[i].Resubmit = resubmit
	}
	s.mu.Unlock()

	for i, r := range stopped {
		s.findStopped(ctx, finder, r, finds[i])
	}
	startCtx := context.WithoutCancel(ctx)
	for i, r := range start {
		if s.stopping() {
			// Close began: leave the rest for the next daemon.
			s.mu.Lock()
			for _, r := range start[i:] {
				r.starting = false
				s.release(r)
				r.GPUs = nil
			}
			s.mu.Unlock()
			return
		}
		ref, err := s.runner.Start(startCtx, reqs[i])
		s.mu.Lock()
		r.starting = false
		if err != nil && errors.Is(err, ErrTemporary) {
			// The attempt keeps its StartKey: the next Start may find it
			// launched after all.
			s.release(r)
			r.tempFails++
			r.notBefore = time.Now().Add(startBackoff(r.tempFails))
			r.Reason = "waiting to start: " + err.Error()
			s.persist(r)
			s.log.Warn("job cannot start yet; will retry", "job", r.Spec.Name, "err", err)
			s.mu.Unlock()
			continue
		}
		r.tempFails, r.StartKey = 0, ""
		r.Attempts++
		if err != nil {
			s.log.Warn("job failed to start", "job", r.Spec.Name, "err", err)
			if errors.Is(err, ErrInvalidSpec) {
				r.noRetry = true // a refusal of the spec: no attempt can succeed
			}
			s.finish(r, RunStatus{State: Failed, ExitCode: -1, Reason: "cannot start: " + err.Error()})
			r.ExitCode = nil
			if r.State == Pending { // requeued: not at once
				r.notBefore = time.Now().Add(startBackoff(r.Attempts))
			}
			s.persist(r)
			s.mu.Unlock()
			continue
		}
		r.Ref = ref
		r.Reason = ""
		if p, ok := s.runner.(interface{ PID(RunRef) int }); ok {
			r.PID = p.PID(ref)
		}
		if !s.runner.AllocatesGPUs() {
			r.State, r.StartTime = Running, time.Now().UTC()
		}
		s.persist(r)
		stop := r.Stop != ""
		s.mu.Unlock()
		if stop {
			if err := s.stopAttempt(startCtx, r, ref); err != nil {
				s.log.Warn("cannot stop job; asking again next round", "job", r.Spec.Name, "err", err)
			}
		}
	}
}

// findStopped settles a job stopped (cancelled) while a start of its
// attempt was uncertain: an attempt the runner finds launched is adopted
// and stopped, so that Poll reports its end; when there is none the job
// ends at once; when the runner cannot tell, it asks again later.
func (s *Scheduler) findStopped(ctx context.Context, finder Finder, r *record, req RunRequest) {
	ref, err := finder.FindStarted(ctx, req)
	s.mu.Lock()
	r.starting = false
	switch {
	case err != nil:
		r.tempFails++
		r.notBefore = time.Now().Add(startBackoff(r.tempFails))
		r.Reason = "stopping: cannot tell yet whether the last start launched it: " + err.Error()
		s.persist(r)
		s.mu.Unlock()
		s.log.Warn("cannot look for a job's launched attempt; will retry", "job", r.Spec.Name, "err", err)
	case ref == "":
		r.State, r.Reason, r.EndTime = r.Stop, r.StopReason, time.Now().UTC()
		r.tempFails, r.StartKey = 0, ""
		s.persist(r)
		s.mu.Unlock()
	default:
		r.Ref, r.Reason, r.tempFails, r.StartKey = ref, "", 0, ""
		r.Attempts++
		s.persist(r)
		s.mu.Unlock()
		s.log.Info("found the launched attempt of a stopped job; stopping it", "job", r.Spec.Name, "ref", ref)
		if err := s.stopAttempt(context.WithoutCancel(ctx), r, ref); err != nil {
			s.log.Warn("cannot stop job; asking again next round", "job", r.Spec.Name, "err", err)
		}
	}
}

// stopping reports whether Close has begun.
func (s *Scheduler) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// newStartKey returns a random RunRequest.StartKey.
func newStartKey() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// planLocked chooses which of pend (in queue order) start now and reserves
// their GPUs (lowest free indices first); mu held.
func (s *Scheduler) planLocked(pend []*record) []*record {
	now := time.Now()
	var running []holding
	for _, r := range s.jobs {
		if (r.State == Running || r.starting) && len(r.GPUs) > 0 {
			h := holding{gpus: len(r.GPUs)}
			if r.timeLimit > 0 {
				begin := r.StartTime
				if begin.IsZero() {
					begin = now
				}
				h.end = begin.Add(r.timeLimit)
			}
			running = append(running, h)
		}
	}
	q := make([]queued, len(pend))
	byName := map[string]*record{}
	for i, r := range pend {
		q[i] = queued{name: r.Spec.Name, gpus: r.Spec.GPUs, limit: r.timeLimit}
		byName[r.Spec.Name] = r
	}
	free := len(s.cfg.GPUs) - len(s.held)
	var out []*record
	for _, name := range plan(now, free, q, running) {
		r := byName[name]
		r.GPUs = r.GPUs[:0]
		for _, g := range s.cfg.GPUs {
			if len(r.GPUs) == r.Spec.GPUs {
				break
			}
			if _, busy := s.held[g.Index]; !busy {
				s.held[g.Index] = name
				r.GPUs = append(r.GPUs, g.Index)
			}
		}
		out = append(out, r)
	}
	return out
}

// request builds the RunRequest for r's next attempt; mu held.
func (s *Scheduler) request(r *record) RunRequest {
	mem, _ := ParseMemory(r.Spec.Memory)
	env := map[string]string{}
	for k, v := range r.Spec.Env {
		env[k] = v
	}
	var gpus []int
	if !s.runner.AllocatesGPUs() {
		gpus = append([]int{}, r.GPUs...)
	}
	return RunRequest{
		Name: r.Spec.Name, Attempt: r.Attempts + 1, Command: append([]string(nil), r.Spec.Command...),
		Shell: r.Spec.Shell, Env: env, Workdir: r.Spec.Workdir, GPUs: gpus, GPUCount: r.Spec.GPUs,
		CPUs: r.Spec.CPUs, MemoryBytes: mem, TimeLimit: r.timeLimit, LogPath: r.LogPath,
		Retries: r.Spec.Retries, Nodes: r.Spec.Nodes, TasksPerNode: r.Spec.NTasksPerNode,
		MountPoint: s.cfg.MountPoint, StartKey: r.StartKey,
	}
}

// startBackoff is how long a job whose attempt could not start waits
// before the next: 1 s, doubling, at most a minute.
func startBackoff(attempts int) time.Duration {
	return min(time.Second<<min(max(attempts-1, 0), 6), time.Minute)
}
