package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Spec is a job spec as the user writes it into .zenith/jobs/submit (JSON, or
// YAML with the same field names). The accepted spec is shown back, as JSON,
// in .zenith/jobs/<name>/spec.
type Spec struct {
	// Name identifies the job: [A-Za-z0-9._-]{1,64}, unique in the store.
	Name string `json:"name" yaml:"name"`
	// Command is an argv array, executed without a shell. With Shell it must
	// hold exactly one element, a command line run by /bin/sh -c; the spec
	// may then give it as that one string.
	Command Argv `json:"command" yaml:"command"`
	// Shell runs Command[0] through /bin/sh -c.
	Shell bool `json:"shell,omitempty" yaml:"shell"`
	// GPUs is the number of GPUs the job needs, held exclusively.
	GPUs int `json:"gpus,omitempty" yaml:"gpus"`
	// CPUs and Memory are recorded and passed to Slurm; the local runner
	// does not enforce them.
	CPUs   int    `json:"cpus,omitempty" yaml:"cpus"`
	Memory string `json:"memory,omitempty" yaml:"memory"`
	// TimeLimit is a Go duration ("2h", "90m", "1h30m") or [H:]MM:SS.
	TimeLimit string `json:"time_limit,omitempty" yaml:"time_limit"`
	// Env is added to the job's environment.
	Env map[string]string `json:"env,omitempty" yaml:"env"`
	// Workdir is an existing directory (absolute path); empty means the
	// scheduler's default work directory.
	Workdir string `json:"workdir,omitempty" yaml:"workdir"`
	// Priority orders the queue: higher first, then submit order.
	Priority int `json:"priority,omitempty" yaml:"priority"`
	// Retries is how many times a FAILED attempt is run again.
	Retries int `json:"retries,omitempty" yaml:"retries"`
	// Nodes and NTasksPerNode are for Slurm.
	Nodes         int `json:"nodes,omitempty" yaml:"nodes"`
	NTasksPerNode int `json:"ntasks_per_node,omitempty" yaml:"ntasks_per_node"`

	// commandString: the spec gave Command as a string, not an array
	// (allowed with Shell only).
	commandString bool
}

// Argv is a command's argument vector. It decodes from an array of
// strings, or from one string (a shell command line, see Spec.Command).
type Argv []string

// UnmarshalJSON implements json.Unmarshaler.
func (a *Argv) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = Argv{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("command: want an array of strings (or, with \"shell\": true, one string)")
	}
	*a = many
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *Argv) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		*a = Argv{n.Value}
		return nil
	}
	var many []string
	if err := n.Decode(&many); err != nil {
		return errors.New("command: want a list of strings (or, with shell: true, one string)")
	}
	*a = many
	return nil
}

// stringCommand reports whether a spec's command is given as a string:
// in JSON, a string value; in YAML, a scalar.
func stringCommand(trimmed []byte) bool {
	if trimmed[0] == '{' {
		var raw struct {
			Command json.RawMessage `json:"command"`
		}
		_ = json.Unmarshal(trimmed, &raw)
		return len(raw.Command) > 0 && raw.Command[0] == '"'
	}
	var node struct {
		Command yaml.Node `yaml:"command"`
	}
	_ = yaml.Unmarshal(trimmed, &node)
	return node.Command.Kind == yaml.ScalarNode && node.Command.Tag != "!!null"
}

// Limits of a spec, beyond which it is rejected.
const (
	maxSpecBytes = 1 << 20
	maxRetries   = 100
	maxArgs      = 4096
	maxPriority  = 1_000_000
)

// reservedEnv are set by the scheduler; a spec may not override them.
var reservedEnv = map[string]bool{"CUDA_VISIBLE_DEVICES": true, "CUDA_DEVICE_ORDER": true, "ZENITH_JOB_NAME": true, "ZENITH_MOUNT": true}

// DefaultForbidden is the forbidden-pattern list used when Config.Forbidden is
// nil, after the Zenith DataPlane validator: regular expressions matched
// against the command line (argv joined by spaces) and against the workdir.
var DefaultForbidden = []string{
	`(^|[\s;&|(])rm\s+(-\S+\s+)*-[A-Za-z]*[rR][A-Za-z]*\s+(\S+\s+)*/\*?(\s|;|&|\||$)`, // rm -rf /
	`(^|[\s;&|(/])mkfs(\.\w+)?(\s|$)`,                                                 // formatting a disk
	`:\(\)\s*\{`,                                                                      // fork bomb :(){ :|:& };:
	`(^|\s)dd\s.*\bof=/dev/(sd|hd|vd|nvme|xvd)`,                                       // overwriting a block device
	`^/(proc|sys)(/|$)`,                                                               // workdir in a kernel tree
}

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// reservedNames are taken by the control tree itself.
	reservedNames = map[string]bool{".": true, "..": true, "submit": true, "errors": true}
)

// Validator checks specs. The zero value checks syntax only; a Scheduler
// builds one from its Config.
type Validator struct {
	// Forbidden patterns, compiled.
	Forbidden []*regexp.Regexp
	// MaxGPUs is the number of GPUs that exist; -1 disables the check
	// (a runner that allocates GPUs itself and was given no inventory).
	MaxGPUs int
	// CheckWorkdir makes Validate stat the workdir.
	CheckWorkdir bool
	// MultiNode allows nodes > 1 (Slurm).
	MultiNode bool
}

// CompilePatterns compiles a forbidden-pattern list; nil means DefaultForbidden.
func CompilePatterns(pats []string) ([]*regexp.Regexp, error) {
	if pats == nil {
		pats = DefaultForbidden
	}
	out := make([]*regexp.Regexp, 0, len(pats))
	for _, p := range pats {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("forbidden pattern %q: %w", p, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// invalid wraps ErrInvalidSpec with a reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// ParseSpec decodes a spec: a JSON object, or a YAML mapping when the text
// does not start with '{'. Unknown fields and trailing data are rejected. It
// checks syntax only; Validator.Validate checks the rest.
func ParseSpec(data []byte) (Spec, error) {
	var sp Spec
	if len(data) > maxSpecBytes {
		return sp, invalid("spec larger than %d bytes", maxSpecBytes)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return sp, invalid("spec contains a NUL byte")
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return sp, invalid("empty spec")
	}
	if trimmed[0] == '{' {
		if err := checkJSONKeys(trimmed); err != nil {
			return Spec{}, err
		}
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sp); err != nil {
			return Spec{}, invalid("not a valid JSON spec: %v", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return Spec{}, invalid("not a valid JSON spec: data after the object")
		}
		sp.commandString = stringCommand(trimmed)
		return sp, nil
	}
	var node yaml.Node
	if err := yaml.Unmarshal(trimmed, &node); err != nil {
		return Spec{}, fmt.Errorf("%w: %w: %v", ErrInvalidSpec, errYAMLSyntax, err)
	}
	if len(node.Content) != 1 || node.Content[0].Kind != yaml.MappingNode {
		return Spec{}, invalid("spec must be a JSON object or a YAML mapping")
	}
	dec := yaml.NewDecoder(bytes.NewReader(trimmed))
	dec.KnownFields(true)
	if err := dec.Decode(&sp); err != nil {
		return Spec{}, invalid("not a valid YAML spec: %v", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return Spec{}, invalid("not a valid YAML spec: more than one document")
	}
	sp.commandString = stringCommand(trimmed)
	return sp, nil
}

// checkJSONKeys refuses what encoding/json would let through: a field
// name spelt in another case ("Name" is not "name") and a field given
// twice (the last would win silently). Syntax errors are left to the
// decoder, which says where.
func checkJSONKeys(data []byte) error {
	known := map[string]bool{}
	t := reflect.TypeFor[Spec]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			known[name] = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		switch {
		case !known[key]:
			return invalid("unknown field %q", key)
		case seen[key]:
			return invalid("field %q given twice", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
	}
	return nil
}

// errYAMLSyntax is wrapped when a spec is neither JSON nor well-formed
// YAML: YAML still being written may become well-formed with its next
// lines (a flow sequence continued on the next line).
var errYAMLSyntax = errors.New("neither a JSON object nor YAML")

// yamlNothingYet reports whether YAML written so far holds no content yet:
// blank lines, comments, a document start marker.
func yamlNothingYet(data []byte) bool {
	var node yaml.Node
	if yaml.Unmarshal(data, &node) != nil {
		return false
	}
	if len(node.Content) == 0 {
		return true
	}
	n := node.Content[0]
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// JSONComplete reports whether buf holds a JSON spec that no more bytes
// can change: a complete JSON value, or broken JSON that no more bytes can
// fix. YAML is never complete: more lines may follow until the writer
// closes the file.
func JSONComplete(buf []byte) bool {
	t := bytes.TrimSpace(buf)
	if !IsJSONSpec(t) {
		return false
	}
	var v json.RawMessage
	err := json.NewDecoder(bytes.NewReader(t)).Decode(&v)
	return !errors.Is(err, io.ErrUnexpectedEOF)
}

// IsJSONSpec reports whether buf holds a spec in JSON (an object) rather
// than YAML.
func IsJSONSpec(buf []byte) bool {
	t := bytes.TrimSpace(buf)
	return len(t) > 0 && t[0] == '{'
}

// CheckName validates a job name.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return invalid("name %q: want 1-64 characters of letters, digits, '.', '_', '-'", name)
	}
	if reservedNames[name] {
		return invalid("name %q is reserved", name)
	}
	return nil
}

// Validate checks a parsed spec; every error wraps ErrInvalidSpec and names
// the reason.
func (v Validator) Validate(sp Spec) error { return v.validate(sp, false) }

// validate is Validate; partial: sp may still grow (see
// Scheduler.CheckPartial), so a missing name or command is no error yet.
func (v Validator) validate(sp Spec, partial bool) error {
	if sp.Name == "" && !partial {
		return invalid("name is required")
	}
	if sp.Name != "" {
		if err := CheckName(sp.Name); err != nil {
			return err
		}
	}
	if partial && (len(sp.Command) == 0 || sp.Command[0] == "") {
		// Not given yet, or a block scalar whose lines are still to come.
		sp.Command, sp.commandString = []string{"true"}, false // what follows checks the rest
	}
	if partial {
		sp.commandString = false // "shell": true may still follow
	}
	if len(sp.Command) == 0 || sp.Command[0] == "" {
		return invalid("command is required: a non-empty argv array")
	}
	if len(sp.Command) > maxArgs {
		return invalid("command has more than %d arguments", maxArgs)
	}
	if sp.commandString && !sp.Shell {
		return invalid("command is one string: give an argv array, or \"shell\": true to run it with /bin/sh -c")
	}
	if sp.Shell && len(sp.Command) != 1 {
		return invalid("with \"shell\": true, command must hold exactly one string (the shell command line)")
	}
	for i, a := range sp.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("command[%d] contains a NUL byte", i)
		}
	}
	line := strings.Join(sp.Command, " ")
	for _, re := range v.Forbidden {
		if re.MatchString(line) {
			return invalid("command matches forbidden pattern %q", re.String())
		}
	}
	if sp.GPUs < 0 || sp.CPUs < 0 || sp.Nodes < 0 || sp.NTasksPerNode < 0 {
		return invalid("gpus, cpus, nodes and ntasks_per_node must not be negative")
	}
	if v.MaxGPUs >= 0 && sp.GPUs > v.MaxGPUs {
		return invalid("gpus %d: only %d GPUs exist", sp.GPUs, v.MaxGPUs)
	}
	if sp.Nodes > 1 && !v.MultiNode {
		return invalid("nodes %d: multi-node jobs need the slurm runner", sp.Nodes)
	}
	if sp.Retries < 0 || sp.Retries > maxRetries {
		return invalid("retries %d: want 0..%d", sp.Retries, maxRetries)
	}
	if sp.Priority < -maxPriority || sp.Priority > maxPriority {
		return invalid("priority %d: want -%d..%d", sp.Priority, maxPriority, maxPriority)
	}
	if _, err := ParseMemory(sp.Memory); err != nil {
		return err
	}
	if _, err := ParseTimeLimit(sp.TimeLimit); err != nil {
		return err
	}
	for k, val := range sp.Env {
		if !envKeyRE.MatchString(k) {
			return invalid("env key %q is not a valid identifier", k)
		}
		if reservedEnv[k] {
			return invalid("env %s is set by the scheduler", k)
		}
		if strings.IndexByte(val, 0) >= 0 {
			return invalid("env %s contains a NUL byte", k)
		}
	}
	if sp.Workdir != "" {
		if err := v.checkWorkdir(sp.Workdir); err != nil {
			return err
		}
	}
	return nil
}

func (v Validator) checkWorkdir(dir string) error {
	if strings.IndexByte(dir, 0) >= 0 {
		return invalid("workdir contains a NUL byte")
	}
	if !filepath.IsAbs(dir) {
		return invalid("workdir %q must be an absolute path", dir)
	}
	for _, re := range v.Forbidden {
		if re.MatchString(filepath.Clean(dir)) {
			return invalid("workdir %q matches forbidden pattern %q", dir, re.String())
		}
	}
	if !v.CheckWorkdir {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return invalid("workdir %q: %v", dir, err)
	}
	if !fi.IsDir() {
		return invalid("workdir %q is not a directory", dir)
	}
	return nil
}

// ParseMemory parses a memory size: a number of bytes with an optional unit
// (K, M, G, T with or without "iB" are binary; KB, MB, GB, TB are decimal).
// The empty string is 0.
func ParseMemory(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 || i > 15 {
		return 0, invalid("memory %q: want a number with an optional unit, e.g. 4GiB", s)
	}
	var n int64
	for _, c := range t[:i] {
		n = n*10 + int64(c-'0')
	}
	units := map[string]int64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}
	mul, ok := units[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, invalid("memory %q: unknown unit", s)
	}
	if n > (1<<62)/mul {
		return 0, invalid("memory %q: too large", s)
	}
	return n * mul, nil
}

// ParseTimeLimit parses a time limit: a Go duration ("2h", "90m"), or
// [[H:]M]M:SS ("1:30:00"). The empty string is 0 (no limit).
func ParseTimeLimit(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if strings.Contains(s, ":") {
		parts := strings.Split(s, ":")
		if len(parts) > 3 {
			return 0, invalid("time_limit %q: want H:MM:SS", s)
		}
		for _, p := range parts {
			if p == "" || len(p) > 6 {
				return 0, invalid("time_limit %q: want H:MM:SS", s)
			}
			n := 0
			for _, c := range p {
				if c < '0' || c > '9' {
					return 0, invalid("time_limit %q: want H:MM:SS", s)
				}
				n = n*10 + int(c-'0')
			}
			d = d*60 + time.Duration(n)*time.Second
		}
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, invalid("time_limit %q: want a duration such as 2h, 90m or 1:30:00", s)
		}
	}
	if d <= 0 {
		return 0, invalid("time_limit %q must be positive", s)
	}
	return d, nil
}

// JSON returns the spec as indented JSON, as shown in jobs/<name>/spec.
func (sp Spec) JSON() []byte {
	b, err := json.MarshalIndent(sp, "", "  ")
	if err != nil { // cannot happen for this struct
		return []byte("{}\n")
	}
	return append(b, '\n')
}
