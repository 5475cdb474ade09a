package scheduler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSubmitRejectsBadSpecs(t *testing.T) {
	cfg := testConfig(t, 2)
	s := newTestScheduler(t, cfg)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	mustSubmit(t, s, []byte(`{"name":"taken","command":["true"]}`))

	tests := []struct {
		name   string
		spec   string
		target error
		reason string // a substring the reason must name
	}{
		{"not JSON", `this is not json`, ErrInvalidSpec, "JSON object or a YAML mapping"},
		{"broken JSON", `{"name": "x", "command": [}`, ErrInvalidSpec, "not a valid JSON spec"},
		{"JSON array", `["true"]`, ErrInvalidSpec, "JSON object or a YAML mapping"},
		{"trailing data", `{"name":"x","command":["true"]} {}`, ErrInvalidSpec, "data after the object"},
		{"empty", "  \n", ErrInvalidSpec, "empty spec"},
		{"unknown field", `{"name":"x","command":["true"],"gpu":1}`, ErrInvalidSpec, `unknown field "gpu"`},
		{"field in another case", `{"Name":"x","command":["true"]}`, ErrInvalidSpec, `unknown field "Name"`},
		{"field given twice", `{"name":"x","command":["true"],"name":"y"}`, ErrInvalidSpec, `field "name" given twice`},
		{"wrong type", `{"name":"x","command":42}`, ErrInvalidSpec, "not a valid JSON spec"},
		{"string command without shell", `{"name":"x","command":"true"}`, ErrInvalidSpec, "command is one string"},
		{"string command without shell, YAML", "name: x\ncommand: echo hi\n", ErrInvalidSpec, "command is one string"},
		{"missing name", `{"command":["true"]}`, ErrInvalidSpec, "name is required"},
		{"bad name", `{"name":"a/b","command":["true"]}`, ErrInvalidSpec, `name "a/b"`},
		{"long name", `{"name":"` + strings.Repeat("a", 65) + `","command":["true"]}`, ErrInvalidSpec, "1-64"},
		{"dotdot name", `{"name":"..","command":["true"]}`, ErrInvalidSpec, "reserved"},
		{"reserved name", `{"name":"submit","command":["true"]}`, ErrInvalidSpec, "reserved"},
		{"duplicate name", `{"name":"taken","command":["true"]}`, ErrExists, "taken"},
		{"too many GPUs", `{"name":"x","command":["true"],"gpus":3}`, ErrInvalidSpec, "only 2 GPUs exist"},
		{"negative GPUs", `{"name":"x","command":["true"],"gpus":-1}`, ErrInvalidSpec, "negative"},
		{"missing command", `{"name":"x"}`, ErrInvalidSpec, "command is required"},
		{"empty command", `{"name":"x","command":[]}`, ErrInvalidSpec, "command is required"},
		{"empty argv0", `{"name":"x","command":[""]}`, ErrInvalidSpec, "command is required"},
		{"shell with argv", `{"name":"x","command":["echo","hi"],"shell":true}`, ErrInvalidSpec, "exactly one string"},
		{"missing workdir", `{"name":"x","command":["true"],"workdir":"/does/not/exist"}`, ErrInvalidSpec, "workdir"},
		{"workdir is a file", `{"name":"x","command":["true"],"workdir":"` + file + `"}`, ErrInvalidSpec, "not a directory"},
		{"relative workdir", `{"name":"x","command":["true"],"workdir":"tmp"}`, ErrInvalidSpec, "absolute"},
		{"forbidden workdir", `{"name":"x","command":["true"],"workdir":"/proc/self"}`, ErrInvalidSpec, "forbidden"},
		{"bad env key", `{"name":"x","command":["true"],"env":{"1X":"y"}}`, ErrInvalidSpec, `env key "1X"`},
		{"reserved env", `{"name":"x","command":["true"],"env":{"CUDA_VISIBLE_DEVICES":"0"}}`, ErrInvalidSpec, "set by the scheduler"},
		{"rm -rf /", `{"name":"x","command":["rm","-rf","/"]}`, ErrInvalidSpec, "forbidden pattern"},
		{"rm -fr /* in shell", `{"name":"x","command":["cd /tmp && rm -fr /*"],"shell":true}`, ErrInvalidSpec, "forbidden pattern"},
		{"mkfs", `{"name":"x","command":["/sbin/mkfs.ext4","/dev/sda1"]}`, ErrInvalidSpec, "forbidden pattern"},
		{"fork bomb", `{"name":"x","command":[":(){ :|:& };:"],"shell":true}`, ErrInvalidSpec, "forbidden pattern"},
		{"NUL byte", "{\"name\":\"x\",\"command\":[\"a\u0000b\"]}", ErrInvalidSpec, "NUL"},
		{"escaped NUL", `{"name":"x","command":["a\u0000b"]}`, ErrInvalidSpec, "NUL"},
		{"bad time limit", `{"name":"x","command":["true"],"time_limit":"forever"}`, ErrInvalidSpec, "time_limit"},
		{"zero time limit", `{"name":"x","command":["true"],"time_limit":"0s"}`, ErrInvalidSpec, "positive"},
		{"bad memory", `{"name":"x","command":["true"],"memory":"lots"}`, ErrInvalidSpec, "memory"},
		{"bad memory unit", `{"name":"x","command":["true"],"memory":"4XB"}`, ErrInvalidSpec, "unknown unit"},
		{"too many retries", `{"name":"x","command":["true"],"retries":1000}`, ErrInvalidSpec, "retries"},
		{"multi-node locally", `{"name":"x","command":["true"],"nodes":2}`, ErrInvalidSpec, "slurm"},
		{"YAML unknown field", "name: x\ncommand: [true]\nbogus: 1\n", ErrInvalidSpec, "bogus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.List())
			_, err := s.Submit([]byte(tc.spec))
			if !errors.Is(err, tc.target) {
				t.Fatalf("Submit(%q) = %v, want %v", tc.spec, err, tc.target)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not name %q", err, tc.reason)
			}
			if n := len(s.List()); n != before {
				t.Fatalf("a rejected spec was queued: %d jobs, want %d", n, before)
			}
			errs := s.Errors()
			if len(errs) == 0 || !strings.Contains(errs[len(errs)-1], tc.reason) {
				t.Fatalf("Errors() does not end with the reason %q: %q", tc.reason, errs)
			}
		})
	}
}

func TestSpecAcceptsGoodForms(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		spec  string
		check func(Spec) bool
	}{
		{"full JSON", `{"name":"resnet-50_v1.2","command":["python3","train.py","--lr","0.1"],"gpus":2,"cpus":8,"memory":"4GiB",
			"time_limit":"2h","env":{"A_B":"c"},"workdir":"` + dir + `","priority":3,"retries":1,"nodes":1,"ntasks_per_node":1}`,
			func(s Spec) bool {
				return s.GPUs == 2 && s.Memory == "4GiB" && s.Env["A_B"] == "c" && len(s.Command) == 4
			}},
		{"YAML", "name: y\ncommand: [python3, train.py]\ngpus: 1\ntime_limit: 1:30:00\n",
			func(s Spec) bool { return s.Name == "y" && s.TimeLimit == "1:30:00" && s.Command[1] == "train.py" }},
		{"shell", `{"name":"sh","command":["echo hi | wc -c"],"shell":true}`,
			func(s Spec) bool { return s.Shell }},
		{"shell, command as one string", `{"name":"sh","command":"echo hi | wc -c","shell":true}`,
			func(s Spec) bool { return s.Shell && len(s.Command) == 1 && s.Command[0] == "echo hi | wc -c" }},
		{"shell, YAML command as one string", "name: sh\nshell: true\ncommand: echo hi | wc -c\n",
			func(s Spec) bool { return s.Shell && len(s.Command) == 1 && s.Command[0] == "echo hi | wc -c" }},
		{"rm elsewhere is fine", `{"name":"rm","command":["rm","-rf","/tmp/scratch"]}`,
			func(s Spec) bool { return true }},
	}
	pats, _ := CompilePatterns(nil)
	v := Validator{Forbidden: pats, MaxGPUs: 2, CheckWorkdir: true}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := ParseSpec([]byte(tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Validate(sp); err != nil {
				t.Fatal(err)
			}
			if !tc.check(sp) {
				t.Fatalf("parsed %+v", sp)
			}
			again, err := ParseSpec(sp.JSON())
			if err != nil || again.Name != sp.Name || len(again.Command) != len(sp.Command) {
				t.Fatalf("spec JSON does not round-trip: %v %+v", err, again)
			}
		})
	}
}

func TestConfigurableForbiddenPatterns(t *testing.T) {
	cfg := testConfig(t, 0)
	cfg.Forbidden = []string{`\bcurl\b`}
	s := newTestScheduler(t, cfg)
	if _, err := s.Submit([]byte(`{"name":"a","command":["curl","http://x"]}`)); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("custom pattern: %v", err)
	}
	// The defaults are replaced, not extended.
	if _, err := s.Submit([]byte(`{"name":"b","command":["echo","mkfs"]}`)); err != nil {
		t.Fatalf("default pattern still active: %v", err)
	}
	cfg.Forbidden = []string{`(`}
	cfg.StateDir = t.TempDir()
	if _, err := New(cfg); err == nil {
		t.Fatal("New accepted a bad pattern")
	}
}

func TestParseTimeLimitAndMemory(t *testing.T) {
	tl := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true}, {"2h", 2 * time.Hour, true}, {"90m", 90 * time.Minute, true}, {"1h30m", 90 * time.Minute, true},
		{"1:30:00", 90 * time.Minute, true}, {"05:30", 330 * time.Second, true}, {"45", 0, false}, {"1::0", 0, false},
		{"-1h", 0, false}, {"1:2:3:4", 0, false}, {"a:b", 0, false},
	}
	for _, tc := range tl {
		got, err := ParseTimeLimit(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTimeLimit(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	mem := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true}, {"4GiB", 4 << 30, true}, {"512MiB", 512 << 20, true}, {"4G", 4 << 30, true}, {"2GB", 2e9, true},
		{"1024", 1024, true}, {"1 k", 1024, true}, {"4.5G", 0, false}, {"G", 0, false}, {"99999999999999999T", 0, false},
	}
	for _, tc := range mem {
		got, err := ParseMemory(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMemory(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestDiscoverGPUs(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		spec string
		want []int
		ok   bool
	}{
		{"0", nil, true}, {"2", []int{0, 1}, true}, {"0,2", []int{0, 2}, true}, {"3,", []int{3}, true},
		{"1,1", nil, false}, {"x", nil, false}, {"-1", nil, false}, {"0,a", nil, false},
	}
	for _, tc := range tests {
		gpus, err := DiscoverGPUs(ctx, tc.spec, nil)
		if (err == nil) != tc.ok {
			t.Errorf("DiscoverGPUs(%q) error %v, want ok=%v", tc.spec, err, tc.ok)
			continue
		}
		var idx []int
		for _, g := range gpus {
			idx = append(idx, g.Index)
		}
		if !slices.Equal(idx, tc.want) {
			t.Errorf("DiscoverGPUs(%q) = %v, want %v", tc.spec, idx, tc.want)
		}
	}

	// auto: a fake nvidia-smi on PATH, then none at all.
	bin := t.TempDir()
	script := "#!/bin/sh\nprintf '0, NVIDIA H200, 143771\\n1, NVIDIA H200, 143771\\n'\n"
	if err := os.WriteFile(filepath.Join(bin, "nvidia-smi"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	gpus, err := DiscoverGPUs(ctx, "auto", nil)
	if err != nil || len(gpus) != 2 || gpus[1].Name != "NVIDIA H200" || gpus[1].MemoryMiB != 143771 || gpus[1].Index != 1 {
		t.Fatalf("auto with nvidia-smi: %+v, %v", gpus, err)
	}
	want := "0\tNVIDIA H200\t143771MiB\t-\n1\tNVIDIA H200\t143771MiB\tjob\n"
	if got := string(FormatGPUs([]GPUStatus{{GPU: gpus[0]}, {GPU: gpus[1], Job: "job"}})); got != want {
		t.Fatalf("FormatGPUs = %q, want %q", got, want)
	}
	t.Setenv("PATH", t.TempDir())
	gpus, err = DiscoverGPUs(ctx, "auto", nil)
	if err != nil || len(gpus) != 0 {
		t.Fatalf("auto without nvidia-smi: %+v, %v; want none, nil", gpus, err)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","command":["true"]}`,
		`{"name":"resnet","command":["python3","train.py"],"gpus":2,"time_limit":"2h","memory":"4GiB","env":{"A":"b"}}`,
		`{"name":"x","command":["echo $(id); rm -rf /"],"shell":true,"retries":3,"priority":-5}`,
		"name: y\ncommand: [a, b]\ntime_limit: 1:30:00\n",
		`{"name":"..","command":[]}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	pats, err := CompilePatterns(nil)
	if err != nil {
		f.Fatal(err)
	}
	v := Validator{Forbidden: pats, MaxGPUs: 4}
	f.Fuzz(func(t *testing.T, data []byte) {
		sp, err := ParseSpec(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("parse error %v does not wrap ErrInvalidSpec", err)
			}
			return
		}
		if err := v.Validate(sp); err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("validation error %v does not wrap ErrInvalidSpec", err)
			}
			return
		}
		// An accepted spec round-trips through its JSON form.
		again, err := ParseSpec(sp.JSON())
		if err != nil {
			t.Fatalf("accepted spec's JSON does not parse: %v\n%s", err, sp.JSON())
		}
		if err := v.Validate(again); err != nil {
			t.Fatalf("accepted spec's JSON does not validate: %v", err)
		}
	})
}

// A YAML spec is one document: anything after "---" is rejected, as data
// after a JSON object is.
func TestYAMLSpecIsOneDocument(t *testing.T) {
	if _, err := ParseSpec([]byte("name: a\ncommand: [x]\n---\njunk: 1\n")); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("a YAML spec with a second document: %v", err)
	}
	if _, err := ParseSpec([]byte("name: a\ncommand: [x]\n")); err != nil {
		t.Fatalf("a plain YAML spec: %v", err)
	}
}

// YAML written a line at a time is checked so far, and nothing a later
// line may complete is refused: a command given before "shell: true", a
// document marker, a comment, a blank first line, a block scalar whose
// lines come next.
func TestCheckPartialLetsValidYAMLGrow(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 0))
	for i, spec := range []string{
		"name: a1\ncommand: echo hi | wc -c\nshell: true\n",
		"---\nname: a2\ncommand: [\"true\"]\n",
		"# my job\nname: a3\ncommand: [\"true\"]\n",
		"\nname: a4\ncommand: [\"true\"]\n",
		"name: a5\nshell: true\ncommand: |\n  echo hi\n",
		"name: a6\ncommand:\n  - |\n    x\n",
	} {
		var buf []byte
		for _, line := range strings.SplitAfter(spec, "\n") {
			if line == "" {
				continue
			}
			buf = append(buf, line...)
			if err := s.CheckPartial(buf); err != nil {
				t.Errorf("spec %d: the write of %q was refused: %v", i, line, err)
				break
			}
		}
		sp, err := ParseSpec([]byte(spec))
		if err == nil {
			err = s.val.Validate(sp)
		}
		if err != nil {
			t.Errorf("spec %d whole: %v", i, err)
		}
	}
	// What no later line can mend is refused at once.
	for _, bad := range []string{"this is not a spec\n", "name: x\ngpu: 1\n", "name: a b\n"} {
		if err := s.CheckPartial([]byte(bad)); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%q: %v, want ErrInvalidSpec", bad, err)
		}
	}
}
