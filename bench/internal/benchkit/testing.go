package benchkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireRootFUSE skips t unless it runs as root (why says what needs
// root) with /dev/fuse present; CI has both.
func RequireRootFUSE(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why + " (CI runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse (CI installs FUSE)")
	}
}

// BuildZenithfs builds ./cmd/zenithfs into a temporary directory and
// returns the binary's path; it is called from a test of a benchmark
// program, whose directory (bench/NAME) is two levels below the module.
func BuildZenithfs(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zenithfs")
	build := exec.Command("go", "build", "-o", bin, "./cmd/zenithfs")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build zenithfs: %v\n%s", err, out)
	}
	return bin
}
