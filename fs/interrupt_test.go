package fs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/blob"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/internal/testlog"
	"github.com/zenithfs/zenithfs/prefetch"
)

// stuckBatches answers a Get only when its request is cancelled, as a
// batch that takes long to build looks to a reader that gets a signal.
type stuckBatches struct{}

func (stuckBatches) Get(ctx context.Context, _ prefetch.View, _ int, _ string) (*blob.Blob, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(20 * time.Second):
		return nil, errors.New("the open was never interrupted")
	}
}

// A reader whose open is interrupted by a signal gets EINTR (Python
// raises its handler's exception), and the mount records no error: an
// interrupt is the caller's, not a failed read.
func TestInterruptedOpenIsNotAnError(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 1000, 500); err != nil {
		t.Fatal(err)
	}
	log, logs := testlog.New(slog.LevelDebug)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{newDataset(t, "d", dir, 100)}, Batches: stuckBatches{}, Logger: log})
	const script = `
import signal, sys
class Alarm(Exception): pass
def alarm(sig, frame): raise Alarm()
signal.signal(signal.SIGALRM, alarm)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    open(sys.argv[1], "rb")
except Alarm:
    print("interrupted")
except OSError as e:
    print("error", e.errno, e)
else:
    print("opened")
`
	out, err := exec.Command(py, "-c", script, filepath.Join(mnt, "d", "000000.arrow")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "interrupted" {
		t.Fatalf("open under SIGALRM: %s (%v), want interrupted", out, err)
	}
	errs, err := os.ReadFile(filepath.Join(mnt, ".zenith", "errors"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(errs), "000000") {
		t.Errorf(".zenith/errors lists the interrupted open: %s", errs)
	}
	if l := logs.String(); strings.Contains(l, "level=ERROR") || !strings.Contains(l, "open interrupted") {
		t.Errorf("log of an interrupted open:\n%s", l)
	}
}
