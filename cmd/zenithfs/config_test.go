package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileAndFlags: the YAML file fills what no flag set; flags win;
// passthrough is on by default and the file or a flag turns it off.
func TestConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "z.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := parseMountArgs([]string{"--dataset", "a=/data/a", "/mnt"})
	if err != nil || !c.Passthrough || c.BatchSize != 1024 || c.Prefetch != 8 || c.CacheSize != "1GiB" {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	write("batch_size: 64\nprefetch: 3\npassthrough: false\ndebug: true\ndatasets:\n  - name: b\n    uri: /data/b\n")
	c, err = parseMountArgs([]string{"--config", file, "--prefetch", "5", "/mnt"})
	if err != nil {
		t.Fatal(err)
	}
	if c.BatchSize != 64 || c.Prefetch != 5 || c.Passthrough || !c.Debug || len(c.Datasets) != 1 || c.Datasets[0].Name != "b" {
		t.Fatalf("file + flags: %+v", c)
	}
	c, err = parseMountArgs([]string{"--config", file, "--passthrough=true", "/mnt"})
	if err != nil || !c.Passthrough {
		t.Fatalf("--passthrough=true over the file's false: %+v, %v", c, err)
	}
	c, err = parseMountArgs([]string{"--dataset", "a=/data/a", "--passthrough=false", "/mnt"})
	if err != nil || c.Passthrough {
		t.Fatalf("--passthrough=false: %+v, %v", c, err)
	}
	write("batch_sise: 64\n")
	if _, err := parseMountArgs([]string{"--config", file, "--dataset", "a=/data/a", "/mnt"}); err == nil || !strings.Contains(err.Error(), "batch_sise") {
		t.Fatalf("a misspelt key: %v, want an error naming it", err)
	}
}

func TestMountHelpListsTheFlagsAndSucceeds(t *testing.T) {
	for _, h := range []string{"-h", "--help"} {
		_, err := parseMountArgs(reorder([]string{h}))
		var help *helpRequested
		if !errors.As(err, &help) {
			t.Fatalf("%s: %v, want the help text", h, err)
		}
		for _, f := range []string{"dataset", "batch-size", "cache-size", "prefetch", "io-uring", "s3-endpoint", "gpus", "state-dir", "config", "workers", "metrics-addr", "jobs", "foreground"} {
			if !strings.Contains(help.text, "-"+f) {
				t.Errorf("%s: help does not name --%s:\n%s", h, f, help.text)
			}
		}
	}
	if rc := run([]string{"mount", "-h"}); rc != 0 {
		t.Fatalf("zenithfs mount -h: exit %d, want 0", rc)
	}
}

func TestSizesTakeUnitsInAnyCase(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "512mib": 512 << 20, "4gib": 4 << 30, "4GiB": 4 << 30, "2g": 2 << 30, "1500kb": 1500e3, "64 MiB": 64 << 20} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1GiB", "lots"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q): no error", bad)
		}
	}
}

func TestPassthroughIsABooleanFlagWhenReordered(t *testing.T) {
	c, err := parseMountArgs(reorder([]string{"--passthrough", "/mnt", "--debug", "--dataset", "a=/data/a"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MountPoint != "/mnt" || !c.Passthrough || !c.Debug {
		t.Fatalf("mount point %q, passthrough %v, debug %v", c.MountPoint, c.Passthrough, c.Debug)
	}
}

// Relative state and log paths are taken from the directory zenithfs
// mount ran in: jobs run in STATE_DIR/work, where a relative path would
// name another place.
func TestRelativePathsAreMadeAbsolute(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseMountArgs([]string{"--dataset", "a=/data/a", "--state-dir", "st", "--log-file", "logs/z.log", "/mnt"})
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != filepath.Join(cwd, "st") || c.LogFile != filepath.Join(cwd, "logs/z.log") {
		t.Fatalf("state dir %q, log file %q; want them under %s", c.StateDir, c.LogFile, cwd)
	}
}
