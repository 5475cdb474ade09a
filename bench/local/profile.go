package main

import (
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// profileDuring captures the daemon's CPU profile (pprof on its
// --metrics-addr) while work runs, into path. The profile lasts a whole
// number of seconds, at least as long as the work is expected to take.
func profileDuring(addr, path string, expect time.Duration, work func() error) error {
	secs := int(math.Ceil(expect.Seconds()*1.3)) + 1
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("GET %s: %s", url, resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- firstErr(err, f.Close())
	}()
	time.Sleep(200 * time.Millisecond) // let the profile start
	werr := work()
	return firstErr(werr, <-done)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// profile mounts afresh with pprof enabled and captures the daemon's CPU
// profile during a cold epoch (P3), a prefetching consumer (P4) and reads
// served from the daemon's cache (P2), into c.Profile.
func (b *bench) profile() (err error) {
	dir := b.c.Profile
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := func(arm string) string { return filepath.Join(dir, fmt.Sprintf("%s-%s.pprof", b.res.Kind, arm)) }
	mountP := func(o MountOpts) (*Daemon, error) {
		if o.MetricsAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		return Mount(o)
	}
	expect := func(id string) time.Duration {
		if r, ok := findRow(b.res, id); ok && benchkit.Median(r.ArmVals) > 0 {
			return time.Duration(float64(b.res.Spec.Rows) / benchkit.Median(r.ArmVals) * float64(time.Second))
		}
		return 2 * time.Second
	}
	// P3: a cold epoch, then P2: reads from the daemon's cache.
	d, err := mountP(b.base)
	if err != nil {
		return err
	}
	err = profileDuring(d.Opts.MetricsAddr, name("p3-cold-epoch"), expect("P3"), func() error {
		_, _, err := epochIPC(b.files)
		return err
	})
	if err == nil {
		err = profileDuring(d.Opts.MetricsAddr, name("p2-cache-reads"), time.Second, func() error {
			for end := time.Now().Add(time.Second); time.Now().Before(end); {
				if err := evictPageCache(b.files); err != nil {
					return err
				}
				if _, _, err := readAll(b.files); err != nil {
					return err
				}
			}
			return nil
		})
	}
	unmount(d, &err)
	if err != nil {
		return err
	}
	// P4 with prefetch.
	files := b.files
	if n := b.c.P4Batches; n > 0 && n < len(files) {
		files = files[:n]
	}
	d, err = mountP(b.base)
	if err != nil {
		return err
	}
	defer unmount(d, &err)
	err = profileDuring(d.Opts.MetricsAddr, name("p4-consumer"), time.Duration(len(files))*b.c.Compute*3/2, func() error {
		_, err := consume(files, b.c.Compute, b.c.Spin)
		return err
	})
	if err == nil {
		log.Printf("%s: profiles in %s (go tool pprof -top BIN FILE)", b.res.Kind, dir)
	}
	return err
}
