package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// Config configures a Scheduler.
type Config struct {
	// StateDir holds jobs.db, logs/<name>.<seq>.log and work/ (the default
	// working directory). Created if missing.
	StateDir string
	// GPUs the scheduler hands out (see DiscoverGPUs).
	GPUs []GPU
	// Runner runs attempts; nil means a LocalRunner built from LogCap.
	Runner Runner
	// Logger; nil discards.
	Logger *slog.Logger
	// Grace is the time between SIGTERM and SIGKILL; default 10s.
	Grace time.Duration
	// Forbidden patterns (regexps) matched against command lines and
	// workdirs; nil means DefaultForbidden, an empty slice none.
	Forbidden []string
	// MountPoint is exported to jobs as ZENITH_MOUNT.
	MountPoint string
	// LogCap caps each job's log (all attempts together) for the default
	// local runner; 0 means 64 MiB, negative unlimited.
	LogCap int64
	// Owner is the uid that, besides root, may submit and cancel (see
	// MayChange); the fs layer enforces it per request.
	Owner uint32
	// PollInterval is the heartbeat: how often running attempts are polled,
	// which also bounds how late a time limit fires; default 1s.
	PollInterval time.Duration
	// LeaveRunning makes Close leave running jobs alone (to be adopted at
	// the next start) instead of stopping them.
	LeaveRunning bool
	// Held: the scheduler starts no job until Start is called (it adopts
	// and polls the running ones meanwhile), e.g. until the daemon has
	// mounted and made its FUSE connection close-on-exec, so that no job
	// inherits it.
	Held bool
	// MaxErrors is how many rejection reasons Errors keeps; default 100.
	MaxErrors int
}

// DefaultLogCap is the log cap when Config.LogCap is 0.
const DefaultLogCap = 64 << 20

// ErrClosed is returned by calls on a closed Scheduler.
var ErrClosed = errors.New("scheduler closed")

// Scheduler queues, places, runs and records jobs. It is safe for
// concurrent use.
//
// Lock order: mu is never held while calling the Runner (Start, Poll and
// Cancel may exec sbatch/squeue) except for cheap, non-blocking bookkeeping;
// store writes happen under mu so that the database sees changes in order.
type Scheduler struct {
	cfg    Config
	log    *slog.Logger
	runner Runner
	val    Validator
	st     *store

	mu      sync.Mutex
	jobs    map[string]*record
	seq     uint64
	held    map[int]string // GPU index → job holding it (local allocation)
	rejects []string
	closed  bool

	wake    chan struct{} // something to dispatch
	pollNow chan struct{} // an attempt ended: poll
	stop    chan struct{}
	done    chan struct{}
	// closeDone is closed when the first Close has finished; a second
	// Close waits for it.
	closeDone chan struct{}
	// startGate, when not nil, is closed by Start: the loop starts nothing
	// before (Config.Held).
	startGate chan struct{}
	startOnce sync.Once
	// loopCtx bounds the loop's runner calls but Start; Close cancels it
	// (stopLoop) so that it need not wait for a pass of polls.
	loopCtx  context.Context
	stopLoop context.CancelFunc
}

// New opens (or creates) the job store in cfg.StateDir and resumes: jobs
// that were RUNNING are polled — still alive, they are adopted and watched;
// gone, they end with the exit status they left, or LOST; PENDING jobs queue
// again.
func New(cfg Config) (*Scheduler, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("scheduler: StateDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.LogCap == 0 {
		cfg.LogCap = DefaultLogCap
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 100
	}
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "logs"), filepath.Join(cfg.StateDir, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("scheduler: %w", err)
		}
	}
	if cfg.Runner == nil {
		cfg.Runner = NewLocalRunner(LocalConfig{Logger: cfg.Logger, LogCap: cfg.LogCap, Workdir: filepath.Join(cfg.StateDir, "work")})
	}
	pats, err := CompilePatterns(cfg.Forbidden)
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	val := Validator{Forbidden: pats, MaxGPUs: len(cfg.GPUs), CheckWorkdir: true, MultiNode: cfg.Runner.AllocatesGPUs()}
	if cfg.Runner.AllocatesGPUs() && len(cfg.GPUs) == 0 {
		val.MaxGPUs = -1
	}
	st, err := openStore(filepath.Join(cfg.StateDir, "jobs.db"))
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	s := &Scheduler{
		cfg: cfg, log: cfg.Logger, runner: cfg.Runner, val: val, st: st,
		jobs: map[string]*record{}, held: map[int]string{},
		wake: make(chan struct{}, 1), pollNow: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), closeDone: make(chan struct{}),
	}
	s.loopCtx, s.stopLoop = context.WithCancel(context.Background())
	if err := s.resume(); err != nil {
		s.stopLoop()
		st.close()
		return nil, err
	}
	if n, ok := cfg.Runner.(interface{ SetNotify(func()) }); ok {
		n.SetNotify(func() { kick(s.pollNow) })
	}
	if cfg.Held {
		s.startGate = make(chan struct{})
	}
	go s.loop()
	kick(s.wake)
	return s, nil
}

// Start lets a scheduler made with Config.Held start jobs. Calling it
// again, or without Held, does nothing.
func (s *Scheduler) Start() {
	if s.startGate != nil {
		s.startOnce.Do(func() { close(s.startGate) })
	}
}

// resume loads the store and settles jobs that were active when the last
// daemon ended.
func (s *Scheduler) resume() error {
	recs, seq, err := s.st.load()
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	s.seq = seq
	for _, r := range recs {
		r.timeLimit, _ = ParseTimeLimit(r.Spec.TimeLimit)
		s.jobs[r.Spec.Name] = r
		if r.State.Terminal() {
			continue
		}
		s.adoptLaunched(r)
		if r.Ref == "" {
			// Pending (or was being started when the daemon died: the
			// attempt never got a reference and is run again).
			r.GPUs = nil
			if n := len(s.cfg.GPUs); !s.runner.AllocatesGPUs() && r.Spec.GPUs > n {
				// This daemon has fewer GPUs than the one that accepted
				// it: it could never start, and would hold up the queue.
				r.noRetry = true
				s.finish(r, RunStatus{State: Failed, ExitCode: -1,
					Reason: fmt.Sprintf("needs %d GPUs, but this daemon has %d (it was submitted to one with more)", r.Spec.GPUs, n)})
				continue
			}
			if r.State != Pending {
				r.State = Pending
				s.persist(r)
			}
			continue
		}
		if !s.runner.AllocatesGPUs() {
			for _, g := range r.GPUs {
				s.held[g] = r.Spec.Name
			}
		}
		st, err := s.runner.Poll(context.Background(), r.Ref)
		if err != nil {
			s.log.Warn("cannot poll job after restart; will retry", "job", r.Spec.Name, "err", err)
			continue
		}
		if st.State == Lost {
			st.Reason = "lost across daemon restart: " + st.Reason
		}
		if !st.State.Terminal() {
			s.log.Info("adopted job after restart", "job", r.Spec.Name, "state", st.State)
			if r.Stop != "" {
				if err := s.stopAttempt(context.Background(), r, r.Ref); err != nil {
					s.log.Warn("cannot stop adopted job; asking again next round", "job", r.Spec.Name, "err", err)
				}
			}
		}
		s.apply(r, r.Ref, st)
	}
	return nil
}

// adoptLaunched adopts, at start-up, the attempt of r that the last daemon
// launched but died before recording (r has the attempt's StartKey and no
// Ref), where the runner places jobs on this daemon's GPUs and can find it:
// the attempt keeps the GPUs it was started with (stored with the StartKey),
// instead of being started a second time beside itself. mu is held or s not
// shared yet. A runner that places jobs itself (Slurm) finds its launch at
// the next Start (RunRequest.Resubmit).
func (s *Scheduler) adoptLaunched(r *record) {
	f, ok := s.runner.(Finder)
	if !ok || r.Ref != "" || r.StartKey == "" || s.runner.AllocatesGPUs() {
		return
	}
	ref, err := f.FindStarted(context.Background(), s.request(r))
	if err != nil {
		s.log.Warn("cannot tell whether the last daemon launched a job; it queues again", "job", r.Spec.Name, "err", err)
		return
	}
	if ref == "" {
		return
	}
	r.Ref, r.StartKey, r.tempFails, r.Reason = ref, "", 0, ""
	r.Attempts++
	r.State, r.StartTime = Running, time.Now().UTC()
	if p, ok := s.runner.(interface{ PID(RunRef) int }); ok {
		r.PID = p.PID(ref)
	}
	s.persist(r)
	s.log.Info("adopted a job the last daemon launched but did not record", "job", r.Spec.Name, "ref", ref, "gpus", r.GPUs)
}

// kick does a non-blocking send on a 1-buffered channel.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// reject records a rejection reason for Errors and returns err.
func (s *Scheduler) reject(err error) error {
	s.NoteRejection(err.Error())
	return err
}

// NoteRejection records a reason a submission was refused (also ones the
// caller refused before Submit, e.g. a permission check) for Errors.
func (s *Scheduler) NoteRejection(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteLocked(reason)
}

// noteLocked is NoteRejection with mu held.
func (s *Scheduler) noteLocked(reason string) {
	s.rejects = append(s.rejects, time.Now().UTC().Format(time.RFC3339)+" "+reason)
	if len(s.rejects) > s.cfg.MaxErrors {
		s.rejects = s.rejects[len(s.rejects)-s.cfg.MaxErrors:]
	}
}

// Errors returns the reasons of the latest rejected submissions, oldest
// first, each prefixed by its UTC time.
func (s *Scheduler) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rejects)
}

// MayChange reports whether uid may submit or cancel: root and Config.Owner.
func (s *Scheduler) MayChange(uid uint32) error {
	if uid == 0 || uid == s.cfg.Owner {
		return nil
	}
	return fmt.Errorf("uid %d is not the mount's owner: %w", uid, ErrPermission)
}

// Submit parses, validates and queues a spec. Errors wrap ErrInvalidSpec
// (with the reason) or ErrExists; a rejected spec queues nothing and its
// reason is kept for Errors. The job is in the store when Submit returns.
func (s *Scheduler) Submit(data []byte) (JobInfo, error) {
	sp, err := s.parse(data, false)
	if err != nil {
		return JobInfo{}, err
	}
	limit, _ := ParseTimeLimit(sp.TimeLimit)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return JobInfo{}, ErrClosed
	}
	if err := s.takenLocked(sp.Name); err != nil {
		return JobInfo{}, err
	}
	r := &record{
		Seq: s.seq + 1, Spec: sp, State: Pending, SubmitTime: time.Now().UTC(),
		LogPath: filepath.Join(s.cfg.StateDir, "logs", fmt.Sprintf("%s.%d.log", sp.Name, s.seq+1)), timeLimit: limit,
	}
	// The log is this submission's (name and sequence number), so that an
	// attempt of a removed job that outlives it (a Slurm requeue the
	// scheduler no longer follows) never writes into a later job's log. A
	// log left there by a store that was since deleted is not this job's,
	// nor are its exit files (a restarted daemon would adopt their status).
	if err := removeJobFiles(r.LogPath); err != nil {
		return JobInfo{}, fmt.Errorf("submit %s: %w", sp.Name, err)
	}
	if err := s.st.add(r); err != nil {
		return JobInfo{}, fmt.Errorf("submit %s: %w", sp.Name, err)
	}
	s.seq++
	s.jobs[sp.Name] = r
	kick(s.wake)
	s.log.Info("job submitted", "job", sp.Name, "gpus", sp.GPUs, "priority", sp.Priority)
	return s.info(r), nil
}

// CheckPartial reports, without submitting it, a reason to refuse a spec
// that may still grow (YAML written a line at a time, submitted when its
// writer closes the file), so that the write that makes it bad fails:
// what Submit would refuse, except a missing name or command and YAML
// that is not well-formed yet, which more lines may mend. A refusal is
// noted as Submit's is.
func (s *Scheduler) CheckPartial(data []byte) error {
	sp, err := s.parse(data, true)
	if err != nil || sp.Name == "" {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takenLocked(sp.Name)
}

// parse decodes and validates a spec, noting a refusal. partial: the spec
// may still grow (CheckPartial), so no content yet, YAML not well-formed
// yet, and a missing name or command are no refusal (sp is then what was
// given, possibly nothing).
func (s *Scheduler) parse(data []byte, partial bool) (Spec, error) {
	if partial && yamlNothingYet(data) {
		return Spec{}, nil
	}
	sp, err := ParseSpec(data)
	if partial && errors.Is(err, errYAMLSyntax) {
		return Spec{}, nil
	}
	if err != nil {
		return Spec{}, s.reject(fmt.Errorf("submit: %w", err))
	}
	if err := s.val.validate(sp, partial); err != nil {
		return Spec{}, s.reject(fmt.Errorf("submit %s: %w", sp.Name, err))
	}
	return sp, nil
}

// takenLocked refuses a name a job already has, noting it; mu held.
func (s *Scheduler) takenLocked(name string) error {
	if _, ok := s.jobs[name]; ok {
		err := fmt.Errorf("submit %s: %w", name, ErrExists)
		s.noteLocked(err.Error())
		return err
	}
	return nil
}

// Cancel stops a job: a pending one ends CANCELLED at once; a running one
// gets SIGTERM, then SIGKILL after the grace period, and ends CANCELLED.
// Cancelling a finished job does nothing. A job that waits in the
// runner's own queue (Slurm) is cancelled there, and asked again until
// the runner takes it; one whose last start may have launched it after all
// (sbatch timed out) stays PENDING until the dispatcher has looked for
// that launch and stopped it.
func (s *Scheduler) Cancel(name string) error { return s.CancelSeq(name, 0) }

// CancelSeq is Cancel of the job name only if it is submission seq (0: any
// submission); a later job of the same name is ErrNotFound.
func (s *Scheduler) CancelSeq(name string, seq uint64) error {
	s.mu.Lock()
	r, ok := s.jobs[name]
	if !ok || seq != 0 && r.Seq != seq {
		s.mu.Unlock()
		return fmt.Errorf("cancel %s: %w", name, ErrNotFound)
	}
	if r.State.Terminal() {
		s.mu.Unlock()
		return nil
	}
	if _, finds := s.runner.(Finder); finds && r.Ref == "" && !r.starting && r.StartKey != "" {
		if r.Stop == "" {
			r.Stop, r.StopReason = Cancelled, "cancelled by user"
		}
		r.notBefore = time.Time{}
		s.persist(r)
		s.mu.Unlock()
		kick(s.wake) // the dispatcher looks for the launch
		return nil
	}
	if r.Ref == "" && !r.starting {
		r.State, r.Reason, r.EndTime = Cancelled, "cancelled by user", time.Now().UTC()
		s.persist(r)
		s.mu.Unlock()
		kick(s.wake)
		return nil
	}
	if r.Stop == "" {
		r.Stop, r.StopReason = Cancelled, "cancelled by user"
		s.persist(r)
	}
	// A repeated cancel asks the runner again: a cancel is idempotent, and
	// the last one may have been refused (scancel timing out).
	ref, starting := r.Ref, r.starting
	s.mu.Unlock()
	if starting {
		return nil // the dispatcher cancels it once Start returns
	}
	return s.stopAttempt(context.Background(), r, ref)
}

// Remove forgets a job that has ended: its record and its log are deleted,
// and its name may be submitted again. A job that has not ended is not
// removed (ErrActive): cancel it first.
func (s *Scheduler) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	r, ok := s.jobs[name]
	if !ok {
		return fmt.Errorf("remove %s: %w", name, ErrNotFound)
	}
	if !r.State.Terminal() {
		return fmt.Errorf("remove %s: %w (%s)", name, ErrActive, r.State)
	}
	if err := s.st.delete(name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	delete(s.jobs, name)
	if err := removeJobFiles(r.LogPath); err != nil {
		s.log.Warn("removed job: files left behind", "job", name, "err", err)
	}
	s.log.Info("job removed", "job", name, "state", r.State)
	return nil
}

// removeJobFiles removes the log logPath and the exit files the local
// runner left beside it; files already gone are no error.
func removeJobFiles(logPath string) error {
	var errs []error
	for _, f := range append(exitFiles(logPath), logPath) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopAttempt asks the runner to stop attempt ref of r; a refusal is returned and
// remembered, so that the loop asks again until the runner takes it.
func (s *Scheduler) stopAttempt(ctx context.Context, r *record, ref RunRef) error {
	err := s.runner.Cancel(ctx, ref, s.cfg.Grace)
	s.mu.Lock()
	if r.Ref == ref {
		r.stopFailed = err != nil
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("cancel %s: %w", r.Spec.Name, err)
	}
	return nil
}

// Job returns a snapshot of one job.
func (s *Scheduler) Job(name string) (JobInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.jobs[name]
	if !ok {
		return JobInfo{}, false
	}
	return s.info(r), true
}

// List returns every job in submit order.
func (s *Scheduler) List() []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobInfo, 0, len(s.jobs))
	for _, r := range s.jobs {
		out = append(out, s.info(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SubmitTime.Before(out[j].SubmitTime) })
	return out
}

// Names returns the job names, sorted.
func (s *Scheduler) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.jobs))
	for n := range s.jobs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// GPUs returns each GPU and the job holding it.
func (s *Scheduler) GPUs() []GPUStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]GPUStatus, len(s.cfg.GPUs))
	for i, g := range s.cfg.GPUs {
		out[i] = GPUStatus{GPU: g, Job: s.held[g.Index]}
	}
	return out
}

// info snapshots r; mu held.
func (s *Scheduler) info(r *record) JobInfo {
	j := JobInfo{
		Name: r.Spec.Name, Seq: r.Seq, Spec: r.Spec, State: r.State, Reason: r.Reason,
		SubmitTime: r.SubmitTime, StartTime: r.StartTime, EndTime: r.EndTime,
		Attempts: r.Attempts, GPUs: slices.Clone(r.GPUs), Runner: s.runner.Name(), LogPath: r.LogPath,
	}
	if r.ExitCode != nil {
		c := *r.ExitCode
		j.ExitCode = &c
	}
	j.PID = r.PID
	j.Spec.Command = slices.Clone(r.Spec.Command)
	return j
}

// persist writes r; mu held. A failed write is logged: the in-memory state
// stays authoritative until the next successful write. A record that is
// no longer the job of its name (removed) is not written back.
func (s *Scheduler) persist(r *record) {
	if s.jobs[r.Spec.Name] != r {
		return
	}
	if err := s.st.put(r); err != nil {
		s.log.Error("job store write failed", "job", r.Spec.Name, "err", err)
	}
}

// Close stops the scheduler. Unless Config.LeaveRunning, running jobs are
// stopped (SIGTERM, SIGKILL after the grace period) and recorded CANCELLED
// with reason "daemon shutdown"; Close waits for them until ctx is done or
// grace plus 5s passed. Pending jobs stay PENDING and queue again at the
// next start. With LeaveRunning, running jobs keep running and are adopted
// by the next Scheduler over the same StateDir.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		// Another Close is stopping the jobs: return when it has (a daemon
		// must not exit while a job it is stopping still runs).
		select {
		case <-s.closeDone:
		case <-ctx.Done():
		}
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	defer close(s.closeDone)
	close(s.stop)
	s.stopLoop() // cut short a pass of polls (one Slurm command per job)
	<-s.done
	if !s.cfg.LeaveRunning {
		s.stopAll(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.st.close(); err != nil {
		return fmt.Errorf("close job store: %w", err)
	}
	return nil
}

// stopAll cancels every active attempt and waits for them to end.
func (s *Scheduler) stopAll(ctx context.Context) {
	s.mu.Lock()
	refs := map[string]RunRef{}
	for name, r := range s.jobs {
		if r.Ref != "" && !r.State.Terminal() {
			if r.Stop == "" {
				r.Stop, r.StopReason = Cancelled, "daemon shutdown"
				s.persist(r)
			}
			refs[name] = r.Ref
		}
	}
	s.mu.Unlock()
	for name, ref := range refs {
		if err := s.runner.Cancel(ctx, ref, s.cfg.Grace); err != nil {
			s.log.Warn("cannot stop job at shutdown", "job", name, "err", err)
		}
	}
	deadline := time.Now().Add(s.cfg.Grace + 5*time.Second)
	for len(s.pollActive(ctx)) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}
