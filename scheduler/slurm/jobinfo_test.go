package slurm

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

// Records as Slurm 22.05 prints them (`scontrol show job -d -o`), trimmed.
const (
	runningLine = `JobId=17 JobName=train UserId=root(0) GroupId=root(0) JobState=RUNNING Reason=None Dependency=(null) ` +
		`Requeue=0 Restarts=0 BatchFlag=1 ExitCode=0:0 DerivedExitCode=0:0 RunTime=00:00:01 TimeLimit=01:00:00 ` +
		`SubmitTime=2026-11-29T08:49:54 StartTime=2026-11-29T08:49:55 EndTime=2026-11-29T09:49:55 ` +
		`AllocNode:Sid=localhost:5655 NumNodes=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=256M,node=1 ` +
		`JOB_GRES=gpu:3   Nodes=vm CPU_IDs=0 Mem=256 GRES=gpu:3(IDX:0,2-3) MinCPUsNode=1 ` +
		`WorkDir=/data/my runs/x StdErr=/var/log/my job.log StdOut=/var/log/my job.log Power= TresPerNode=gres:gpu:3`
	pendingLine = `JobId=18 JobName=wait JobState=PENDING Reason=Resources Dependency=(null) ExitCode=0:0 ` +
		`StartTime=2027-01-01T00:00:00 EndTime=Unknown JOB_GRES=gpu:2 Nodes= GRES=`
	failedLine = `JobId=19 JobName=bad JobState=FAILED Reason=NonZeroExitCode ExitCode=7:0 ` +
		`StartTime=2026-11-29T08:49:55 EndTime=2026-11-29T08:49:56`
	cancelledLine = `JobId=20 JobName=c JobState=CANCELLED Reason=None ExitCode=0:15 ` +
		`StartTime=2026-11-29T08:49:55 EndTime=2026-11-29T08:50:00`
)

func TestParseJobLineKeepsSpacesInValues(t *testing.T) {
	info := parseJobLine(runningLine)
	for key, want := range map[string]string{
		"JobId":         "17",
		"JobState":      "RUNNING",
		"WorkDir":       "/data/my runs/x",
		"StdOut":        "/var/log/my job.log",
		"AllocNode:Sid": "localhost:5655",
		"CPUs/Task":     "1",
		"TRES":          "cpu=1,mem=256M,node=1",
		"GRES":          "gpu:3(IDX:0,2-3)",
		"Power":         "",
	} {
		if got := info.get(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

func TestStatusFromInfo(t *testing.T) {
	at := func(s string) time.Time { return parseSlurmTime(s) }
	tests := []struct {
		name string
		line string
		want scheduler.RunStatus
	}{
		{"running with gpus", runningLine, scheduler.RunStatus{
			State: scheduler.Running, StartedAt: at("2026-11-29T08:49:55"), GPUs: []int{0, 2, 3}}},
		{"pending shows reason, no start", pendingLine, scheduler.RunStatus{
			State: scheduler.Pending, Reason: "Resources"}},
		{"failed exit code", failedLine, scheduler.RunStatus{
			State: scheduler.Failed, ExitCode: 7, Reason: "NonZeroExitCode",
			StartedAt: at("2026-11-29T08:49:55"), EndedAt: at("2026-11-29T08:49:56")}},
		{"cancelled by signal", cancelledLine, scheduler.RunStatus{
			State: scheduler.Cancelled, ExitCode: -1, Reason: "cancelled",
			StartedAt: at("2026-11-29T08:49:55"), EndedAt: at("2026-11-29T08:50:00")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := statusFromInfo(parseJobLine(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestStatusFromInfoUnknownState(t *testing.T) {
	_, err := statusFromInfo(parseJobLine("JobId=1 JobState=FROBNICATED"))
	if !errors.Is(err, ErrUnknownState) {
		t.Fatalf("err = %v, want ErrUnknownState", err)
	}
}

func TestMapState(t *testing.T) {
	tests := map[string]scheduler.State{
		"PENDING":        scheduler.Pending,
		"REQUEUED":       scheduler.Pending,
		"REQUEUE_HOLD":   scheduler.Pending,
		"CONFIGURING":    scheduler.Running,
		"RUNNING":        scheduler.Running,
		"COMPLETING":     scheduler.Running,
		"SUSPENDED":      scheduler.Running,
		"COMPLETED":      scheduler.Completed,
		"FAILED":         scheduler.Failed,
		"OUT_OF_MEMORY":  scheduler.Failed,
		"PREEMPTED":      scheduler.Failed,
		"CANCELLED":      scheduler.Cancelled,
		"CANCELLED by 0": scheduler.Cancelled, // sacct
		"cancelled+":     scheduler.Cancelled,
		"TIMEOUT":        scheduler.Timeout,
		"DEADLINE":       scheduler.Timeout,
		"NODE_FAIL":      scheduler.Lost,
		"BOOT_FAIL":      scheduler.Lost,
	}
	for in, want := range tests {
		if got, ok := mapState(in); !ok || got != want {
			t.Errorf("mapState(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := mapState("SOMETHING_NEW"); ok {
		t.Error("an unknown state mapped")
	}
}

func TestParseExitCode(t *testing.T) {
	tests := []struct {
		in         string
		code, sig  int
		wantErrNil bool
	}{
		{"0:0", 0, 0, true},
		{"7:0", 7, 0, true},
		{"0:15", -1, 15, true},
		{"255:0", 255, 0, true},
		{"", 0, 0, true},
		{"x:0", 0, 0, false},
		{"1:y", 0, 0, false},
	}
	for _, tt := range tests {
		code, sig, err := parseExitCode(tt.in)
		if (err == nil) != tt.wantErrNil || code != tt.code || sig != tt.sig {
			t.Errorf("parseExitCode(%q) = %d, %d, %v", tt.in, code, sig, err)
		}
	}
}

func TestParseGPUIndices(t *testing.T) {
	tests := []struct {
		in   []string
		want []int
	}{
		{[]string{"gpu:2(IDX:0-1)"}, []int{0, 1}},
		{[]string{"gpu:3(IDX:0,2-3)"}, []int{0, 2, 3}},
		{[]string{"gpu:a100:2(IDX:4,6)"}, []int{4, 6}},
		{[]string{"nic:1(IDX:0),gpu:1(IDX:3)"}, []int{3}},
		{[]string{"", "gpu:1(IDX:1)"}, []int{1}},
		{[]string{""}, nil},
		{nil, nil},
		{[]string{"gpu:2(IDX:N/A)"}, nil},
	}
	for _, tt := range tests {
		if got := parseGPUIndices(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseGPUIndices(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFindJobPicksTheRightRecord(t *testing.T) {
	out := pendingLine + "\n" + failedLine + "\n"
	info, ok := findJob(out, "19")
	if !ok || info.get("JobState") != "FAILED" {
		t.Fatalf("findJob 19 = %v, %v", info, ok)
	}
	if _, ok := findJob(out, "1"); ok {
		t.Fatal("found job 1, which is not there")
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		ref         scheduler.RunRef
		id, cluster string
		ok          bool
	}{
		{"123", "123", "", true},
		{"123;gpu-cluster", "123", "gpu-cluster", true},
		{"", "", "", false},
		{"12a", "", "", false},
		{"-1", "", "", false},
	}
	for _, tt := range tests {
		id, cluster, err := parseRef(tt.ref)
		if (err == nil) != tt.ok || id != tt.id || cluster != tt.cluster {
			t.Errorf("parseRef(%q) = %q, %q, %v", tt.ref, id, cluster, err)
		}
	}
}

func TestParseParsable(t *testing.T) {
	for out, want := range map[string]scheduler.RunRef{
		"42\n":                             "42",
		"42;east\n":                        "42;east",
		"sbatch: warning: something\n43\n": "43",
		"\n  44  \n":                       "44",
	} {
		got, err := parseParsable(out)
		if err != nil || got != want {
			t.Errorf("parseParsable(%q) = %q, %v; want %q", out, got, err, want)
		}
	}
	if _, err := parseParsable("Submitted batch job 4\n"); err == nil {
		t.Error("non-parsable output accepted")
	}
}

// A run recorded by the local runner (the daemon restarted with --jobs
// slurm) is Lost with a reason, not an error polled forever.
func TestPollOfAnotherRunnersJobIsLost(t *testing.T) {
	st, err := New(Config{}).Poll(context.Background(), scheduler.RunRef("local:1234:5678:/tmp/x"))
	if err != nil || st.State != scheduler.Lost || !strings.Contains(st.Reason, "another runner") {
		t.Fatalf("Poll of a local run: %+v, %v", st, err)
	}
}
