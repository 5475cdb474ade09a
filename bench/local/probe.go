package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
)

// PhaseTimes splits reading a set of files into open, read and close.
type PhaseTimes struct {
	Open, Read, Close time.Duration
	Bytes             int64
	Files             int
}

func (p PhaseTimes) String() string {
	tot := p.Open + p.Read + p.Close
	per := func(d time.Duration) string {
		return (d / time.Duration(max(p.Files, 1))).Round(time.Microsecond / 10).String()
	}
	return fmt.Sprintf("%d files, %.1f MB in %s (%.0f MB/s): per file open %s, read %s, close %s",
		p.Files, float64(p.Bytes)/1e6, tot.Round(time.Microsecond), float64(p.Bytes)/tot.Seconds()/1e6,
		per(p.Open), per(p.Read), per(p.Close))
}

// readPhases reads every file whole with one read(2) per buffer-full and
// times the three phases separately.
func readPhases(paths []string, bufSize int, evict bool, gap time.Duration) (PhaseTimes, error) {
	var pt PhaseTimes
	buf := make([]byte, bufSize)
	for _, p := range paths {
		if evict {
			if err := evictPageCache([]string{p}); err != nil {
				return pt, err
			}
		}
		t0 := time.Now()
		fd, err := openRetry(p)
		if err != nil {
			return pt, fmt.Errorf("open %s: %w", p, err)
		}
		t1 := time.Now()
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				unix.Close(fd)
				return pt, fmt.Errorf("read %s: %w", p, err)
			}
			if n == 0 {
				break
			}
			pt.Bytes += int64(n)
		}
		t2 := time.Now()
		unix.Close(fd)
		t3 := time.Now()
		pt.Open += t1.Sub(t0)
		pt.Read += t2.Sub(t1)
		pt.Close += t3.Sub(t2)
		pt.Files++
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	return pt, nil
}

// cmdProbe times open/read/close of the batch files of a directory (a
// mounted dataset, or its tmpfs copy): a diagnostic for the P1/P2 arms.
func cmdProbe(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	reps := fs.Int("reps", 3, "passes over the files")
	bufSize := fs.Int("buf", 8<<20, "read(2) buffer size")
	evict := fs.Bool("evict", false, "evict each file's page cache (fadvise DONTNEED) before reading it")
	gap := fs.Duration("gap", 0, "sleep between files (a consumer's compute time)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, dir := range fs.Args() {
		paths, err := batchFiles(dir)
		if err != nil {
			return err
		}
		for i := 0; i < *reps; i++ {
			pt, err := readPhases(paths, *bufSize, *evict, *gap)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s: %s\n", dir, pt)
		}
	}
	return nil
}

// openRetry opens p read-only, retrying when a signal interrupts the open
// (the Go runtime's preemption signals do, on a FUSE file).
func openRetry(p string) (int, error) {
	for {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
