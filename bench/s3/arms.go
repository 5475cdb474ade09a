package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Epoch is one measured epoch of one arm.
type Epoch struct {
	Kind, Arm string
	Rep       int
	Seconds   float64
	Rows      int64
	Batches   int
	GETs      int64 // GET requests of the epoch (retries included)
	Bytes     int64 // body bytes the GETs returned
	Retries   int64
	// CPU seconds spent during the epoch by the zenithfs daemon, versitygw,
	// and this process (the reader, or the whole baseline).
	DaemonCPU, ServerCPU, SelfCPU float64
	// The daemon's prefetch counters over the epoch.
	WaitSeconds                      float64
	PrefetchHits, InflightHits, Miss uint64
}

// Env is what every arm needs.
type Env struct {
	Bin, Endpoint, Bucket string
	Server                *benchkit.Versitygw
	Client                *s3.Client
	Work                  string
	CacheSize             string
	Workers               int
	Profile               string // when set, a daemon CPU profile of the first zenithfs epoch of each dataset goes here
}

// zstats is the part of .zenith/stats the benchmark reads.
type zstats struct {
	S3 []struct {
		GETs, BytesFetched, Retries, Errors int64
		LastError                           string
	} `json:"s3"`
	Prefetch struct {
		WaitSeconds  float64 `json:"reader_wait_seconds"`
		PrefetchHits uint64  `json:"prefetch_hits"`
		InflightHits uint64  `json:"prefetch_inflight_hits"`
		Misses       uint64  `json:"misses"`
	} `json:"prefetch"`
}

func readStats(mnt string) (zstats, error) {
	var st zstats
	b, err := os.ReadFile(filepath.Join(mnt, ".zenith", "stats"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf(".zenith/stats: %w", err)
	}
	if len(st.S3) != 1 {
		return st, fmt.Errorf(".zenith/stats: %d S3 stores, want 1", len(st.S3))
	}
	return st, nil
}

// mountS3 mounts kind's prefix with zenithfs and returns the daemon's pid
// and how long `zenithfs mount` took (the index pass, on a first mount).
func (e *Env) mountS3(k Kind, mnt, state string, prefetch int, extra ...string) (int, time.Duration, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return 0, 0, err
	}
	args := []string{"mount", "--state-dir", state, "--s3-endpoint", e.Endpoint,
		"--dataset", "d=s3://" + e.Bucket + "/" + k.Name, "--batch-size", strconv.Itoa(k.Batch),
		"--cache-size", e.CacheSize, "--prefetch", strconv.Itoa(prefetch), "--gpus", "0"}
	if e.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(e.Workers))
	}
	args = append(args, extra...)
	start := time.Now()
	out, err := exec.Command(e.Bin, append(args, mnt)...).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("zenithfs %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	pid, err := benchkit.DaemonPID(mnt)
	return pid, took, err
}

// IndexPass is the first mount of a dataset: listing, footers, and the
// encode of every batch to learn its exact size.
type IndexPass struct {
	Seconds     float64
	GETs, Bytes int64
}

func (e *Env) indexPass(k Kind, state string) (IndexPass, error) {
	mnt := filepath.Join(e.Work, "mnt-index-"+k.Name)
	_, took, err := e.mountS3(k, mnt, state, 8)
	if err != nil {
		return IndexPass{}, err
	}
	defer benchkit.Umount(e.Bin, mnt)
	st, err := readStats(mnt)
	if err != nil {
		return IndexPass{}, err
	}
	return IndexPass{Seconds: took.Seconds(), GETs: st.S3[0].GETs, Bytes: st.S3[0].BytesFetched}, nil
}

// zenithEpoch mounts with the cached index (state) — a fresh daemon, so
// its cache is cold — and reads every batch file in order, decoding each
// with arrow-go's IPC file reader.
func (e *Env) zenithEpoch(k Kind, arm, state string, prefetch, rep int) (Epoch, error) {
	ep := Epoch{Kind: k.Name, Arm: arm, Rep: rep}
	mnt := filepath.Join(e.Work, "mnt-"+k.Name)
	var extra []string
	profile := e.Profile != "" && rep == 0 && arm == "zenithfs"
	var addr string
	if profile {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ep, err
		}
		addr = l.Addr().String()
		l.Close()
		extra = []string{"--metrics-addr", addr}
	}
	pid, _, err := e.mountS3(k, mnt, state, prefetch, extra...)
	if err != nil {
		return ep, err
	}
	profiled := make(chan error, 1)
	if profile {
		// The first seconds of the epoch, which the reads below start at once.
		go func() { profiled <- fetchProfile(addr, filepath.Join(e.Profile, "daemon-"+k.Name+".pprof"), 2) }()
	} else {
		profiled <- nil
	}
	defer func() {
		if err := <-profiled; err != nil {
			log.Printf("profile: %v", err)
		}
	}()
	defer benchkit.Umount(e.Bin, mnt)
	before, err := readStats(mnt)
	if err != nil {
		return ep, err
	}
	var man struct {
		Batches int   `json:"batches"`
		Rows    int64 `json:"rows"`
	}
	b, err := os.ReadFile(filepath.Join(mnt, "d", "_manifest.json"))
	if err == nil {
		err = json.Unmarshal(b, &man)
	}
	if err != nil {
		return ep, fmt.Errorf("manifest: %w", err)
	}
	d0, s0, c0 := benchkit.ProcCPUSeconds(pid), benchkit.ProcCPUSeconds(e.Server.Pid()), benchkit.SelfCPU().Seconds()
	start := time.Now()
	for i := 0; i < man.Batches; i++ {
		b, err := os.ReadFile(filepath.Join(mnt, "d", fmt.Sprintf("%06d.arrow", i)))
		if err != nil {
			return ep, err
		}
		r, err := ipc.NewFileReader(bytes.NewReader(b), ipc.WithAllocator(memory.DefaultAllocator))
		if err != nil {
			return ep, fmt.Errorf("batch %d: %w", i, err)
		}
		for j := 0; j < r.NumRecords(); j++ {
			rec, err := r.RecordBatch(j)
			if err != nil {
				return ep, fmt.Errorf("batch %d: %w", i, err)
			}
			ep.Rows += rec.NumRows()
		}
		r.Close()
		ep.Batches++
	}
	ep.Seconds = time.Since(start).Seconds()
	ep.DaemonCPU, ep.ServerCPU, ep.SelfCPU = benchkit.ProcCPUSeconds(pid)-d0, benchkit.ProcCPUSeconds(e.Server.Pid())-s0, benchkit.SelfCPU().Seconds()-c0
	after, err := readStats(mnt)
	if err != nil {
		return ep, err
	}
	if ep.Rows != man.Rows {
		return ep, fmt.Errorf("read %d rows, manifest says %d", ep.Rows, man.Rows)
	}
	if after.S3[0].Errors != 0 {
		return ep, fmt.Errorf("S3 errors during the epoch: %s", after.S3[0].LastError)
	}
	ep.GETs = after.S3[0].GETs - before.S3[0].GETs
	ep.Bytes = after.S3[0].BytesFetched - before.S3[0].BytesFetched
	ep.Retries = after.S3[0].Retries - before.S3[0].Retries
	ep.WaitSeconds = after.Prefetch.WaitSeconds - before.Prefetch.WaitSeconds
	ep.PrefetchHits = after.Prefetch.PrefetchHits - before.Prefetch.PrefetchHits
	ep.InflightHits = after.Prefetch.InflightHits - before.Prefetch.InflightHits
	ep.Miss = after.Prefetch.Misses - before.Prefetch.Misses
	return ep, nil
}

// baselineEpoch is the no-FUSE baseline: a loop that GETs each Parquet
// object whole with the SDK and decodes it with arrow-go (pqarrow) into
// record batches of the benchmark's batch size.
func (e *Env) baselineEpoch(ctx context.Context, k Kind, parallel bool, rep int) (Epoch, error) {
	arm := "baseline"
	if parallel {
		arm = "baseline-parallel"
	}
	ep := Epoch{Kind: k.Name, Arm: arm, Rep: rep}
	list, err := e.Client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(e.Bucket), Prefix: aws.String(k.Name + "/")})
	if err != nil {
		return ep, err
	}
	var keys []string
	for _, o := range list.Contents {
		if strings.HasSuffix(aws.ToString(o.Key), ".parquet") {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	s0, c0 := benchkit.ProcCPUSeconds(e.Server.Pid()), benchkit.SelfCPU().Seconds()
	start := time.Now()
	for _, key := range keys {
		out, err := e.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(key)})
		if err != nil {
			return ep, fmt.Errorf("get %s: %w", key, err)
		}
		buf := bytes.NewBuffer(make([]byte, 0, aws.ToInt64(out.ContentLength)))
		_, err = io.Copy(buf, out.Body)
		out.Body.Close()
		if err != nil {
			return ep, fmt.Errorf("get %s: %w", key, err)
		}
		ep.GETs++
		ep.Bytes += int64(buf.Len())
		pf, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			return ep, fmt.Errorf("%s: %w", key, err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(k.Batch), Parallel: parallel}, memory.DefaultAllocator)
		if err != nil {
			return ep, fmt.Errorf("%s: %w", key, err)
		}
		rr, err := fr.GetRecordReader(ctx, nil, nil)
		if err != nil {
			return ep, fmt.Errorf("%s: %w", key, err)
		}
		for rr.Next() {
			ep.Rows += rr.RecordBatch().NumRows()
			ep.Batches++
		}
		if err := rr.Err(); err != nil && err != io.EOF {
			return ep, fmt.Errorf("%s: %w", key, err)
		}
		rr.Release()
		pf.Close()
	}
	ep.Seconds = time.Since(start).Seconds()
	ep.ServerCPU, ep.SelfCPU = benchkit.ProcCPUSeconds(e.Server.Pid())-s0, benchkit.SelfCPU().Seconds()-c0
	if want := int64(k.Files) * k.Rows; ep.Rows != want {
		return ep, fmt.Errorf("baseline decoded %d rows, want %d", ep.Rows, want)
	}
	return ep, nil
}

// fetchProfile saves a CPU profile of secs seconds from a daemon's pprof endpoint.
func fetchProfile(addr, path string, secs int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
