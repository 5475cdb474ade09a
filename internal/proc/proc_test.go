package proc

import (
	"os"
	"os/exec"
	"testing"
)

func TestReadStatOfRealProcesses(t *testing.T) {
	self, ok := ReadStat(os.Getpid())
	if !ok || !self.Alive() || self.PPID != os.Getppid() || self.Start == 0 {
		t.Fatalf("own stat %+v, ok %v; want alive, parent %d", self, ok, os.Getppid())
	}
	// A child that exited and is not yet reaped: a zombie.
	cmd := exec.Command("sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	for i := 0; i < 500; i++ {
		if st, ok := ReadStat(pid); ok && !st.Alive() {
			break
		}
		exec.Command("sleep", "0.01").Run()
	}
	st, ok := ReadStat(pid)
	if !ok || st.Alive() || st.PPID != os.Getpid() {
		t.Fatalf("exited child: %+v, ok %v; want a zombie whose parent is us", st, ok)
	}
	cmd.Wait()
	if _, ok := ReadStat(pid); ok {
		t.Fatal("a reaped process still reads")
	}
}
