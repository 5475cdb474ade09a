package scheduler

import (
	"encoding/json"
	"time"
)

// JobInfo is a snapshot of one job.
type JobInfo struct {
	Name string
	// Seq is the job's place in submit order, unique in its store: a job
	// submitted under the name of a removed one has another.
	Seq        uint64
	Spec       Spec
	State      State
	ExitCode   *int // nil until an attempt ended with a known status
	Reason     string
	SubmitTime time.Time
	StartTime  time.Time // of the latest attempt; zero until it runs
	EndTime    time.Time // zero until terminal
	Attempts   int
	GPUs       []int // GPUs held by the latest attempt
	PID        int   // local runner: process-group leader of the latest attempt
	Runner     string
	LogPath    string
}

// Status returns the content of jobs/<name>/status: one word and a newline.
func (j JobInfo) Status() []byte { return []byte(string(j.State) + "\n") }

// statusJSON is the schema of jobs/<name>/status.json.
type statusJSON struct {
	Name       string     `json:"name"`
	State      State      `json:"state"`
	GPUs       []int      `json:"gpus"`
	PID        *int       `json:"pid"`
	ExitCode   *int       `json:"exit_code"`
	Reason     string     `json:"reason"`
	SubmitTime time.Time  `json:"submit_time"`
	StartTime  *time.Time `json:"start_time"`
	EndTime    *time.Time `json:"end_time"`
	Attempts   int        `json:"attempts"`
	Retries    int        `json:"retries"`
	Priority   int        `json:"priority"`
	TimeLimit  string     `json:"time_limit,omitempty"`
	Runner     string     `json:"runner"`
	Log        string     `json:"log"`
}

// StatusJSON returns the content of jobs/<name>/status.json: name, state,
// gpus, pid (null unless a local process ran), exit_code (null until known), reason, submit/start/end times
// (RFC 3339; null until they happen), attempts, retries, priority, runner
// and the log path.
func (j JobInfo) StatusJSON() []byte {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	gpus := j.GPUs
	if gpus == nil {
		gpus = []int{}
	}
	var pid *int
	if j.PID > 0 {
		pid = &j.PID
	}
	b, err := json.MarshalIndent(statusJSON{
		Name: j.Name, State: j.State, GPUs: gpus, PID: pid, ExitCode: j.ExitCode,
		Reason: j.Reason, SubmitTime: j.SubmitTime, StartTime: opt(j.StartTime), EndTime: opt(j.EndTime),
		Attempts: j.Attempts, Retries: j.Spec.Retries, Priority: j.Spec.Priority, TimeLimit: j.Spec.TimeLimit,
		Runner: j.Runner, Log: j.LogPath,
	}, "", "  ")
	if err != nil {
		return []byte("{}\n")
	}
	return append(b, '\n')
}
