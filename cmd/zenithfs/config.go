package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"gopkg.in/yaml.v3"
)

// Config is everything `zenithfs mount` is told, from flags and --config.
type Config struct {
	MountPoint  string          `yaml:"-"`
	Foreground  bool            `yaml:"-"`
	Datasets    []DatasetConfig `yaml:"datasets"`
	BatchSize   int             `yaml:"batch_size"`
	CacheSize   string          `yaml:"cache_size"`
	Prefetch    int             `yaml:"prefetch"`
	IOUring     string          `yaml:"io_uring"`
	S3Endpoint  string          `yaml:"s3_endpoint"`
	GPUs        string          `yaml:"gpus"`
	StateDir    string          `yaml:"state_dir"`
	Workers     int             `yaml:"workers"`
	MetricsAddr string          `yaml:"metrics_addr"`
	Jobs        string          `yaml:"jobs"`
	LogFile     string          `yaml:"log_file"`
	AllowOther  bool            `yaml:"allow_other"`
	Debug       bool            `yaml:"debug"`
	Passthrough bool            `yaml:"-"`
	// PassthroughYAML is the file's passthrough setting, when it has one.
	PassthroughYAML *bool `yaml:"passthrough"`
	// CheckInterval is the least time between two checks of a dataset's sources.
	CheckInterval string `yaml:"check_interval"`
	// Forbidden command patterns for job specs (regular expressions).
	Forbidden []string `yaml:"forbidden"`

	cacheBytes int64
}

// DatasetConfig is one dataset: a name, a URI and per-dataset options.
type DatasetConfig struct {
	Name      string         `yaml:"name"`
	URI       string         `yaml:"uri"`
	BatchSize int            `yaml:"batch_size"`
	Schema    []SchemaColumn `yaml:"schema"` // CSV / JSON Lines: columns instead of inference
}

// SchemaColumn is a column of a configured schema.
type SchemaColumn struct {
	Name     string `yaml:"name"`
	Type     string `yaml:"type"` // int64, int32, float64, float32, bool, string, binary, timestamp[us], date32
	Nullable *bool  `yaml:"nullable"`
}

type datasetFlags []string

func (d *datasetFlags) String() string     { return strings.Join(*d, ",") }
func (d *datasetFlags) Set(v string) error { *d = append(*d, v); return nil }

// helpRequested is -h or --help: the text goes to stdout, and the command
// succeeds.
type helpRequested struct{ text string }

func (h *helpRequested) Error() string { return h.text }

// parseMountArgs parses `zenithfs mount` flags and the optional --config
// file; flags given on the command line win over the file.
func parseMountArgs(args []string) (*Config, error) {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	var out strings.Builder
	fs.SetOutput(&out)
	var c Config
	var ds datasetFlags
	var cfgFile string
	fs.Var(&ds, "dataset", "NAME=URI (repeatable): a local file or directory, or s3://bucket/prefix")
	fs.IntVar(&c.BatchSize, "batch-size", 1024, "rows per batch file")
	fs.StringVar(&c.CacheSize, "cache-size", "1GiB", "in-memory cache budget")
	fs.IntVar(&c.Prefetch, "prefetch", 8, "batches read ahead of each reader")
	fs.StringVar(&c.IOUring, "io-uring", "auto", "auto|on|off")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "S3-compatible endpoint URL")
	fs.StringVar(&c.GPUs, "gpus", "auto", "auto | N | 0,1,3")
	fs.StringVar(&c.StateDir, "state-dir", defaultStateDir(), "index and job database directory")
	fs.StringVar(&cfgFile, "config", "", "YAML config file")
	fs.IntVar(&c.Workers, "workers", 0, "prefetch workers (default: number of cores)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "HOST:PORT for Prometheus metrics")
	fs.StringVar(&c.Jobs, "jobs", "local", "local|slurm")
	fs.BoolVar(&c.Foreground, "foreground", false, "stay attached; Ctrl-C unmounts")
	fs.StringVar(&c.LogFile, "log-file", "", "daemon log file (default STATE_DIR/zenithfs.log)")
	fs.BoolVar(&c.AllowOther, "allow-other", false, "let other users access the mount")
	fs.BoolVar(&c.Debug, "debug", false, "log every FUSE request")
	fs.BoolVar(&c.Passthrough, "passthrough", true, "cache batches as memfds that the kernel reads itself (FUSE passthrough; needs root and Linux ≥ 6.9, else off); --passthrough=false serves every read from the daemon")
	fs.StringVar(&c.CheckInterval, "check-interval", "1s", "least time between source-change checks")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			out.Reset()
			fmt.Fprintln(&out, "usage: zenithfs mount [flags] MOUNTPOINT\n\nflags:")
			fs.PrintDefaults()
			return nil, &helpRequested{text: out.String()}
		}
		return nil, fmt.Errorf("%v (see zenithfs mount -h)", err)
	}
	if fs.NArg() != 1 {
		return nil, fmt.Errorf("usage: zenithfs mount [flags] MOUNTPOINT (got %d arguments)", fs.NArg())
	}
	c.MountPoint = fs.Arg(0)
	if cfgFile != "" {
		var fileCfg Config
		b, err := os.ReadFile(cfgFile)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&fileCfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %w", cfgFile, err)
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		merge(&c, &fileCfg, set)
	}
	for _, d := range ds {
		name, uri, ok := strings.Cut(d, "=")
		if !ok || name == "" || uri == "" {
			return nil, fmt.Errorf("--dataset %q: want NAME=URI", d)
		}
		c.Datasets = append(c.Datasets, DatasetConfig{Name: name, URI: uri})
	}
	return &c, c.validate()
}

// merge copies the file's values into c where no flag set them.
func merge(c, f *Config, set map[string]bool) {
	c.Datasets = append(c.Datasets, f.Datasets...)
	pick := func(flagName string, apply func()) {
		if !set[flagName] {
			apply()
		}
	}
	if f.BatchSize != 0 {
		pick("batch-size", func() { c.BatchSize = f.BatchSize })
	}
	if f.CacheSize != "" {
		pick("cache-size", func() { c.CacheSize = f.CacheSize })
	}
	if f.Prefetch != 0 {
		pick("prefetch", func() { c.Prefetch = f.Prefetch })
	}
	if f.IOUring != "" {
		pick("io-uring", func() { c.IOUring = f.IOUring })
	}
	if f.S3Endpoint != "" {
		pick("s3-endpoint", func() { c.S3Endpoint = f.S3Endpoint })
	}
	if f.GPUs != "" {
		pick("gpus", func() { c.GPUs = f.GPUs })
	}
	if f.StateDir != "" {
		pick("state-dir", func() { c.StateDir = f.StateDir })
	}
	if f.Workers != 0 {
		pick("workers", func() { c.Workers = f.Workers })
	}
	if f.MetricsAddr != "" {
		pick("metrics-addr", func() { c.MetricsAddr = f.MetricsAddr })
	}
	if f.Jobs != "" {
		pick("jobs", func() { c.Jobs = f.Jobs })
	}
	if f.LogFile != "" {
		pick("log-file", func() { c.LogFile = f.LogFile })
	}
	if f.CheckInterval != "" {
		pick("check-interval", func() { c.CheckInterval = f.CheckInterval })
	}
	if f.AllowOther {
		c.AllowOther = true
	}
	if f.Debug {
		c.Debug = true
	}
	if f.PassthroughYAML != nil {
		pick("passthrough", func() { c.Passthrough = *f.PassthroughYAML })
	}
	c.Forbidden = append(c.Forbidden, f.Forbidden...)
}

func defaultStateDir() string {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "zenithfs")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "zenithfs-state")
	}
	return filepath.Join(home, ".local", "state", "zenithfs")
}

func (c *Config) validate() error {
	if len(c.Datasets) == 0 {
		return errors.New("no datasets: give at least one --dataset NAME=URI")
	}
	seen := map[string]bool{}
	for _, d := range c.Datasets {
		if d.Name == ".zenith" || strings.ContainsAny(d.Name, "/\x00") || d.Name == "." || d.Name == ".." || strings.HasPrefix(d.Name, ".") {
			return fmt.Errorf("dataset name %q: must be a plain name, not starting with '.', without '/'", d.Name)
		}
		if seen[d.Name] {
			return fmt.Errorf("dataset name %q given twice", d.Name)
		}
		seen[d.Name] = true
		if d.BatchSize < 0 {
			return fmt.Errorf("dataset %s: batch_size must be positive", d.Name)
		}
	}
	if c.BatchSize <= 0 {
		return fmt.Errorf("--batch-size %d: must be positive", c.BatchSize)
	}
	n, err := parseSize(c.CacheSize)
	if err != nil {
		return fmt.Errorf("--cache-size: %w", err)
	}
	c.cacheBytes = n
	if c.Prefetch < 0 {
		return fmt.Errorf("--prefetch %d: must be ≥ 0", c.Prefetch)
	}
	switch c.IOUring {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--io-uring %q: want auto, on or off", c.IOUring)
	}
	switch c.Jobs {
	case "local", "slurm":
	default:
		return fmt.Errorf("--jobs %q: want local or slurm", c.Jobs)
	}
	if c.Workers < 0 {
		return fmt.Errorf("--workers %d: must be ≥ 0", c.Workers)
	}
	// Jobs run in STATE_DIR/work and the daemon may change directory: a
	// relative path would name another place there.
	for _, p := range []struct {
		flag string
		path *string
	}{{"--state-dir", &c.StateDir}, {"--log-file", &c.LogFile}} {
		if *p.path == "" {
			continue
		}
		abs, err := filepath.Abs(*p.path)
		if err != nil {
			return fmt.Errorf("%s %q: %w", p.flag, *p.path, err)
		}
		*p.path = abs
	}
	return nil
}

// parseSize parses sizes such as 512MiB, 4GiB, 1G, 100000.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if len(t) >= len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 4GiB)", s)
	}
	return int64(v * float64(mult)), nil
}

// arrowSchema turns a configured schema into an Arrow schema.
func (d DatasetConfig) arrowSchema() (*arrow.Schema, error) {
	if len(d.Schema) == 0 {
		return nil, nil
	}
	fields := make([]arrow.Field, len(d.Schema))
	for i, c := range d.Schema {
		var t arrow.DataType
		switch strings.ToLower(c.Type) {
		case "int64":
			t = arrow.PrimitiveTypes.Int64
		case "int32":
			t = arrow.PrimitiveTypes.Int32
		case "float64", "double":
			t = arrow.PrimitiveTypes.Float64
		case "float32", "float":
			t = arrow.PrimitiveTypes.Float32
		case "bool", "boolean":
			t = arrow.FixedWidthTypes.Boolean
		case "string", "utf8":
			t = arrow.BinaryTypes.String
		case "binary":
			t = arrow.BinaryTypes.Binary
		case "timestamp[us]", "timestamp":
			t = arrow.FixedWidthTypes.Timestamp_us
		case "date32", "date":
			t = arrow.FixedWidthTypes.Date32
		default:
			return nil, fmt.Errorf("dataset %s: column %s: unknown type %q", d.Name, c.Name, c.Type)
		}
		fields[i] = arrow.Field{Name: c.Name, Type: t, Nullable: c.Nullable == nil || *c.Nullable}
	}
	return arrow.NewSchema(fields, nil), nil
}

// passthrough reports whether batch files are served by FUSE passthrough:
// asked for, and possible (go-fuse registers backing files only for a
// privileged daemon).
func (c *Config) passthrough() bool { return c.Passthrough && os.Geteuid() == 0 }
