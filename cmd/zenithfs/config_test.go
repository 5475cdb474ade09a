package main

import (
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
