package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// queueRunner is a fake of a runner that queues attempts itself, as
// Slurm does (AllocatesGPUs): the test sets the state Poll reports for
// every attempt. Cancel ends the attempt CANCELLED, after refusing the
// first refusals calls; Poll takes pollDelay (cut short by its context).
type queueRunner struct {
	mu        sync.Mutex
	state     State
	reason    string
	started   time.Time
	gpus      []int
	starts    []RunRequest
	startErrs []error // returned by the next starts, in turn
	cancels   []RunRef
	refusals  int
	pollDelay time.Duration
}

func (q *queueRunner) Name() string        { return "fake" }
func (q *queueRunner) AllocatesGPUs() bool { return true }

func (q *queueRunner) Start(ctx context.Context, req RunRequest) (RunRef, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.starts = append(q.starts, req)
	if len(q.startErrs) > 0 {
		err := q.startErrs[0]
		q.startErrs = q.startErrs[1:]
		if err != nil {
			return "", err
		}
	}
	return RunRef(fmt.Sprint(len(q.starts))), nil
}

func (q *queueRunner) Poll(ctx context.Context, ref RunRef) (RunStatus, error) {
	if q.pollDelay > 0 {
		select {
		case <-ctx.Done():
			return RunStatus{}, ctx.Err()
		case <-time.After(q.pollDelay):
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st := RunStatus{State: q.state, Reason: q.reason, ExitCode: -1}
	if q.state == Running {
		st.StartedAt, st.GPUs = q.started, slices.Clone(q.gpus)
	}
	if q.state.Terminal() {
		st.EndedAt = time.Now()
	}
	return st, nil
}

func (q *queueRunner) Cancel(ctx context.Context, ref RunRef, grace time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.refusals > 0 {
		q.refusals--
		return fmt.Errorf("controller down: %w", ErrTemporary)
	}
	q.cancels = append(q.cancels, ref)
	q.state = Cancelled
	return nil
}

// set changes what Poll reports.
func (q *queueRunner) set(st State, reason string, started time.Time, gpus ...int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.state, q.reason, q.started, q.gpus = st, reason, started, gpus
}

func (q *queueRunner) startCalls() []RunRequest {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.starts)
}

func (q *queueRunner) cancelCalls() []RunRef {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.cancels)
}

// queueScheduler runs q's jobs, polling every 50 ms.
func queueScheduler(t *testing.T, dir string, q Runner) *Scheduler {
	t.Helper()
	s, err := New(Config{StateDir: dir, Runner: q, PollInterval: 50 * time.Millisecond, Grace: time.Second, LeaveRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// waitJob waits until cond holds for the job, failing after timeout.
func waitJob(t *testing.T, s *Scheduler, name, what string, timeout time.Duration, cond func(JobInfo) bool) JobInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, ok := s.Job(name)
		if !ok {
			t.Fatalf("job %s not found", name)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s after %v: %s (%s), start %v", name, what, timeout, j.State, j.Reason, j.StartTime)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A running job the runner takes back into its queue (a Slurm requeue) is
// PENDING again, without start time or GPUs; when it runs again it is
// RUNNING from the new start, and its time limit counts from there.
func TestRequeuedJobIsPendingAgainAndItsLimitCountsFromTheNewStart(t *testing.T) {
	q := &queueRunner{}
	t0 := time.Now()
	q.set(Running, "", t0, 0)
	s := queueScheduler(t, t.TempDir(), q)
	mustSubmit(t, s, []byte(`{"name":"j","command":["true"],"time_limit":"2s"}`))
	j := waitState(t, s, "j", Running, 5*time.Second)
	if !j.StartTime.Equal(t0) {
		t.Fatalf("start %v, want %v", j.StartTime, t0)
	}

	time.Sleep(500 * time.Millisecond)
	q.set(Pending, "BeginTime", time.Time{})
	j = waitState(t, s, "j", Pending, 5*time.Second)
	if !j.StartTime.IsZero() || len(j.GPUs) != 0 {
		t.Errorf("requeued job keeps start %v, GPUs %v", j.StartTime, j.GPUs)
	}
	if !strings.Contains(j.Reason, "requeued") || !strings.Contains(j.Reason, "BeginTime") {
		t.Errorf("requeued job's reason %q", j.Reason)
	}
	time.Sleep(200 * time.Millisecond)
	if j, _ := s.Job("j"); !strings.Contains(j.Reason, "requeued") {
		t.Errorf("a later poll dropped the requeue from the reason: %q", j.Reason)
	}

	// Runs again past the first start's time limit.
	for time.Since(t0) < 1500*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
	}
	t1 := time.Now()
	q.set(Running, "", t1, 3)
	j = waitState(t, s, "j", Running, 5*time.Second)
	if !j.StartTime.Equal(t1) || !slices.Equal(j.GPUs, []int{3}) || j.Reason != "" {
		t.Fatalf("restarted job: start %v GPUs %v reason %q; want start %v, GPUs [3], no reason", j.StartTime, j.GPUs, j.Reason, t1)
	}
	for time.Since(t0) < 2500*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
	}
	if j, _ := s.Job("j"); j.State != Running || len(q.cancelCalls()) != 0 {
		t.Fatalf("%v after the first start (limit 2s), %v after the new one: %s (%s), cancels %v",
			time.Since(t0), time.Since(t1), j.State, j.Reason, q.cancelCalls())
	}
	j = waitState(t, s, "j", Timeout, 5*time.Second)
	if ran := j.EndTime.Sub(t1); ran < 2*time.Second {
		t.Errorf("timed out %v after the new start, want at least its 2s limit", ran)
	}
}

// A new start seen without the pending phase (it passed between two polls,
// or while the daemon was down) also restarts the time limit.
func TestNewStartBetweenPollsRestartsTheLimit(t *testing.T) {
	q := &queueRunner{}
	t0 := time.Now().Add(-time.Second)
	q.set(Running, "", t0)
	s := queueScheduler(t, t.TempDir(), q)
	mustSubmit(t, s, []byte(`{"name":"j","command":["true"],"time_limit":"2s"}`))
	waitState(t, s, "j", Running, 5*time.Second)
	t1 := time.Now()
	q.set(Running, "", t1)
	waitJob(t, s, "j", "restarted", 5*time.Second, func(j JobInfo) bool { return j.StartTime.Equal(t1) })
	for time.Since(t0) < 2500*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
	}
	if j, _ := s.Job("j"); j.State != Running {
		t.Fatalf("%s (%s) 1 s after its new start, limit 2s", j.State, j.Reason)
	}
}

// A cancel the runner refuses while the job still waits in the runner's
// queue (scancel during a controller outage) is asked again, not only
// once the job runs.
func TestRefusedCancelOfAQueuedJobIsAskedAgain(t *testing.T) {
	q := &queueRunner{refusals: 2}
	q.set(Pending, "Priority", time.Time{})
	s := queueScheduler(t, t.TempDir(), q)
	mustSubmit(t, s, []byte(`{"name":"j","command":["true"]}`))
	waitJob(t, s, "j", "queued in the runner", 5*time.Second, func(j JobInfo) bool { return j.Reason == "Priority" })
	if err := s.Cancel("j"); err == nil {
		t.Fatal("a refused cancel reported success")
	}
	j := waitState(t, s, "j", Cancelled, 5*time.Second)
	if j.Reason != "cancelled by user" || len(q.cancelCalls()) != 1 {
		t.Errorf("reason %q, cancels %v", j.Reason, q.cancelCalls())
	}
}

// Close does not wait for a pass of polls, one slow runner call per job
// (scontrol timing out while slurmctld is down).
func TestCloseCutsShortAPassOfPolls(t *testing.T) {
	q := &queueRunner{pollDelay: 2 * time.Second}
	q.set(Running, "", time.Now())
	s, err := New(Config{StateDir: t.TempDir(), Runner: q, PollInterval: 20 * time.Millisecond, LeaveRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustSubmit(t, s, fmt.Appendf(nil, `{"name":"j%d","command":["true"]}`, i))
	}
	for deadline := time.Now().Add(5 * time.Second); len(q.startCalls()) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("jobs not started")
		}
	}
	time.Sleep(100 * time.Millisecond) // a pass of polls is under way
	begin := time.Now()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("Close took %v, waiting for polls", took)
	}
	for _, n := range []string{"j0", "j1", "j2"} {
		if j, _ := s.Job(n); j.State.Terminal() {
			t.Errorf("%s ended %s (%s) at shutdown", n, j.State, j.Reason)
		}
	}
}

// A start that failed with ErrTemporary is retried with the same StartKey
// and Resubmit set (so that a runner can find what it launched), after a
// pause; a new attempt or another job gets another key.
func TestUncertainStartIsRetriedWithItsKey(t *testing.T) {
	q := &queueRunner{startErrs: []error{fmt.Errorf("sbatch timed out: %w", ErrTemporary)}}
	q.set(Running, "", time.Now())
	s := queueScheduler(t, t.TempDir(), q)
	mustSubmit(t, s, []byte(`{"name":"a","command":["true"]}`))
	waitState(t, s, "a", Running, 5*time.Second)
	mustSubmit(t, s, []byte(`{"name":"b","command":["true"]}`))
	waitState(t, s, "b", Running, 5*time.Second)
	st := q.startCalls()
	if len(st) != 3 {
		t.Fatalf("%d starts, want 3", len(st))
	}
	if st[0].StartKey == "" || st[0].Resubmit {
		t.Errorf("first start: key %q, resubmit %v", st[0].StartKey, st[0].Resubmit)
	}
	if st[1].StartKey != st[0].StartKey || !st[1].Resubmit || st[1].Attempt != 1 {
		t.Errorf("retried start: key %q (first %q), resubmit %v, attempt %d", st[1].StartKey, st[0].StartKey, st[1].Resubmit, st[1].Attempt)
	}
	if st[2].StartKey == "" || st[2].StartKey == st[0].StartKey || st[2].Resubmit {
		t.Errorf("another job: key %q (first %q), resubmit %v", st[2].StartKey, st[0].StartKey, st[2].Resubmit)
	}
	if j, _ := s.Job("a"); j.Attempts != 1 {
		t.Errorf("attempts %d, want 1", j.Attempts)
	}
}

// The key of an uncertain start survives a daemon restart.
func TestUncertainStartKeySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	q := &queueRunner{startErrs: []error{fmt.Errorf("sbatch timed out: %w", ErrTemporary)}}
	s, err := New(Config{StateDir: dir, Runner: q, PollInterval: 50 * time.Millisecond, LeaveRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	mustSubmit(t, s, []byte(`{"name":"a","command":["true"]}`))
	waitJob(t, s, "a", "waiting to start", 5*time.Second, func(j JobInfo) bool { return strings.HasPrefix(j.Reason, "waiting to start") })
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	q2 := &queueRunner{}
	q2.set(Running, "", time.Now())
	s = queueScheduler(t, dir, q2)
	waitState(t, s, "a", Running, 5*time.Second)
	first, again := q.startCalls()[0], q2.startCalls()[0]
	if again.StartKey != first.StartKey || !again.Resubmit {
		t.Errorf("after restart: key %q (before %q), resubmit %v", again.StartKey, first.StartKey, again.Resubmit)
	}
}

// findingRunner is a queueRunner whose failed starts may have launched
// the attempt: FindStarted reports found.
type findingRunner struct {
	*queueRunner
	mu    sync.Mutex
	found RunRef
	finds []RunRequest
}

func (f *findingRunner) FindStarted(ctx context.Context, req RunRequest) (RunRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds = append(f.finds, req)
	return f.found, nil
}

// A job cancelled while its uncertain start waits to be retried is not
// forgotten with its launch: an attempt the runner finds is stopped, and
// the job ends CANCELLED either way.
func TestCancelAfterUncertainStartStopsWhatWasLaunched(t *testing.T) {
	for _, found := range []RunRef{"77", ""} {
		t.Run(fmt.Sprintf("found=%q", found), func(t *testing.T) {
			q := &queueRunner{startErrs: []error{fmt.Errorf("sbatch timed out: %w", ErrTemporary)}}
			q.set(Pending, "Priority", time.Time{})
			f := &findingRunner{queueRunner: q, found: found}
			s := queueScheduler(t, t.TempDir(), f)
			mustSubmit(t, s, []byte(`{"name":"a","command":["true"]}`))
			waitJob(t, s, "a", "waiting to start", 5*time.Second, func(j JobInfo) bool { return strings.HasPrefix(j.Reason, "waiting to start") })
			if err := s.Cancel("a"); err != nil {
				t.Fatal(err)
			}
			j := waitState(t, s, "a", Cancelled, 5*time.Second)
			if j.Reason != "cancelled by user" {
				t.Errorf("reason %q", j.Reason)
			}
			f.mu.Lock()
			finds := slices.Clone(f.finds)
			f.mu.Unlock()
			if len(finds) != 1 || finds[0].StartKey != q.startCalls()[0].StartKey {
				t.Errorf("looked %d times for the launch (%+v)", len(finds), finds)
			}
			want := []RunRef(nil)
			if found != "" {
				want = []RunRef{found}
			}
			if got := q.cancelCalls(); !slices.Equal(got, want) {
				t.Errorf("cancelled %v, want %v", got, want)
			}
			if n := len(q.startCalls()); n != 1 {
				t.Errorf("%d starts of a cancelled job", n)
			}
		})
	}
}
