package slurm

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

// jobInfo is one job record as Slurm prints it (`scontrol show job -d -o`,
// or a jobcomp/filetxt line): Key=Value pairs. A key may repeat (the per-node
// detail lines of -d each carry Nodes=, CPU_IDs=, GRES=), so values are lists.
type jobInfo map[string][]string

// keyRE matches the start of a Key=Value token. Slurm keys contain letters,
// digits and the separators seen in "AllocNode:Sid", "CPUs/Task",
// "NtasksPerN:B:S:C".
var keyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_:/]*=`)

// parseJobLine splits one -o record into its pairs. Values may contain spaces
// (a WorkDir, StdOut or Comment with a space in it): a token that does not
// start with Key= continues the previous value.
func parseJobLine(line string) jobInfo {
	info := jobInfo{}
	var last string
	for _, tok := range strings.Fields(line) {
		if loc := keyRE.FindStringIndex(tok); loc != nil {
			last = tok[:loc[1]-1]
			info[last] = append(info[last], tok[loc[1]:])
			continue
		}
		if last != "" {
			vs := info[last]
			vs[len(vs)-1] += " " + tok
		}
	}
	return info
}

// get returns the first value of key, "" when absent.
func (j jobInfo) get(key string) string {
	if vs := j[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// findJob returns the record of job id among the lines of out (an array or a
// federation can print several records), or false.
func findJob(out, id string) (jobInfo, bool) {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		info := parseJobLine(line)
		if info.get("JobId") == id {
			return info, true
		}
	}
	return nil, false
}

// mapState maps a Slurm job state (base name, as scontrol/squeue/sacct print
// it) to the control tree's states. ok is false for a state this runner does
// not know, which Poll reports as an error rather than guessing.
//
// CONFIGURING is a flag on a running job in Slurm (resources allocated, nodes
// still booting), so it counts as Running; COMPLETING means the job's
// processes are being cleaned up and its final state is not known yet, so it
// is still Running. Suspended and stopped jobs hold their resources: Running.
func mapState(s string) (st scheduler.State, ok bool) {
	// sacct prints "CANCELLED by 0"; scontrol may append flags with '+'.
	s = strings.ToUpper(strings.TrimSpace(s))
	if i := strings.IndexAny(s, " +"); i >= 0 {
		s = s[:i]
	}
	switch s {
	case "PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT":
		return scheduler.Pending, true
	case "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
		"STAGE_OUT", "RESIZING", "POWER_UP_NODE", "UPDATE_DB":
		return scheduler.Running, true
	case "COMPLETED":
		return scheduler.Completed, true
	case "FAILED", "OUT_OF_MEMORY", "PREEMPTED":
		return scheduler.Failed, true
	case "CANCELLED":
		return scheduler.Cancelled, true
	case "TIMEOUT", "DEADLINE":
		return scheduler.Timeout, true
	case "NODE_FAIL", "BOOT_FAIL", "REVOKED", "LAUNCH_FAILED":
		return scheduler.Lost, true
	}
	return "", false
}

// parseExitCode reads Slurm's "N:S" (exit status N, or killed by signal S).
// A signal gives -1, as the Runner contract asks.
func parseExitCode(v string) (code int, signal int, err error) {
	if v == "" {
		return 0, 0, nil
	}
	a, b, found := strings.Cut(v, ":")
	code, err = strconv.Atoi(a)
	if err != nil {
		return 0, 0, fmt.Errorf("exit code %q: %w", v, err)
	}
	if found {
		signal, err = strconv.Atoi(b)
		if err != nil {
			return 0, 0, fmt.Errorf("exit code %q: %w", v, err)
		}
	}
	if signal != 0 {
		return -1, signal, nil
	}
	return code, 0, nil
}

// parseSlurmTime reads Slurm's local "2006-01-02T15:04:05"; "Unknown", "None",
// "N/A" and "" give the zero time.
func parseSlurmTime(v string) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", v, time.Local)
	if err != nil {
		return time.Time{}
	}
	return t
}

// idxRE finds the device indices of one node's GRES allocation:
// "gpu:2(IDX:0-1)", "gpu:a100:3(IDX:0,2-3)".
var idxRE = regexp.MustCompile(`^gpu(?::[^:(]+)?(?::\d+)?\(IDX:([0-9,\-]+)\)`)

// parseGPUIndices returns the GPU indices of the first (batch) node's
// allocation from the -d detail's GRES= values, nil when none is shown (a
// pending or finished job). The detail can list several gres in one value
// ("gpu:2(IDX:0-1),nic:1(IDX:0)").
func parseGPUIndices(values []string) []int {
	for _, v := range values {
		for _, part := range splitGres(v) {
			m := idxRE.FindStringSubmatch(part)
			if m == nil {
				continue
			}
			idx, err := expandRanges(m[1])
			if err == nil && len(idx) > 0 {
				return idx
			}
		}
	}
	return nil
}

// splitGres splits "gpu:2(IDX:0,2),nic:1(IDX:0)" at the commas outside
// parentheses.
func splitGres(v string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range v {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, v[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, v[start:])
}

// expandRanges turns "0,2-3" into [0 2 3].
func expandRanges(s string) ([]int, error) {
	var out []int
	for _, r := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("index range %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("index range %q: %w", s, err)
			}
		}
		if b < a || b-a > 1<<16 {
			return nil, fmt.Errorf("index range %q: bad bounds", s)
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

// statusFromInfo turns a job record into a RunStatus. It fails only on a
// state it does not know.
func statusFromInfo(info jobInfo) (scheduler.RunStatus, error) {
	raw := info.get("JobState")
	st, ok := mapState(raw)
	if !ok {
		return scheduler.RunStatus{}, fmt.Errorf("job %s: Slurm state %q: %w", info.get("JobId"), raw, ErrUnknownState)
	}
	rs := scheduler.RunStatus{State: st, Reason: slurmReason(info.get("Reason"))}
	if st == scheduler.Running || st.Terminal() {
		rs.StartedAt = parseSlurmTime(info.get("StartTime"))
	}
	if st == scheduler.Running {
		rs.GPUs = parseGPUIndices(info["GRES"])
	}
	if !st.Terminal() {
		return rs, nil
	}
	rs.EndedAt = parseSlurmTime(info.get("EndTime"))
	code, sig, err := parseExitCode(info.get("ExitCode"))
	if err != nil {
		code = -1
	}
	rs.ExitCode = code
	if rs.Reason == "" {
		rs.Reason = defaultReason(st, raw, code, sig)
	}
	return rs, nil
}

// slurmReason drops Slurm's "None" and its underscores-for-spaces habit is
// kept as is (users search for "Resources", "Priority", "ReqNodeNotAvail…").
func slurmReason(r string) string {
	if r == "None" || r == "(null)" {
		return ""
	}
	return r
}

// defaultReason explains a terminal state when Slurm gave no reason.
func defaultReason(st scheduler.State, raw string, code, sig int) string {
	switch {
	case st == scheduler.Timeout:
		return "time limit reached"
	case st == scheduler.Cancelled:
		return "cancelled"
	case st == scheduler.Lost:
		return "Slurm state " + raw
	case sig != 0:
		return fmt.Sprintf("killed by signal %d", sig)
	case st == scheduler.Failed && strings.HasPrefix(strings.ToUpper(raw), "OUT_OF_MEMORY"):
		return "out of memory"
	case st == scheduler.Failed && strings.HasPrefix(strings.ToUpper(raw), "PREEMPTED"):
		return "preempted"
	case st == scheduler.Failed:
		return fmt.Sprintf("exit code %d", code)
	}
	return ""
}
