// Command peers benchmarks zenithfs against the filesystems and libraries a
// user would pick instead, on the same data, the same consumer and the
// same simulated network, in one run (issue 8).
//
// A run starts versitygw on a loopback port, generates deterministic
// Parquet datasets (a tabular one and one of 64 KiB binary blobs), uploads
// them, and puts a Proxy between every arm and versitygw: it adds a
// first-byte latency to every request and caps each response stream's
// bandwidth ("remote"), or passes traffic through ("loopback"); either way
// it counts the GETs and bytes each arm fetches. The arms:
//
//	zenithfs        mount s3://bucket/NAME, read the batch files in order
//	zenithfs view   the same mount's views/seed=S,epoch=E/ (shuffled batches)
//	s3fs            s3fs-fuse mount of the bucket, the Parquet files decoded
//	rclone full/off rclone mount, --vfs-cache-mode full and off
//	sdk             in-process: aws-sdk-go-v2 ranged GETs of each row group,
//	                fetched ahead of the decoder, decoded from memory
//	… random        the peers reading row groups in a seeded shuffled order
//	zenithfs local  zenithfs over the local files, cold (page cache
//	direct          dropped) and warm; direct: the same Parquet decode on
//	                the local files
//
// Every arm feeds the same consumer (`peers consume`, its own process):
// batches of the dataset's batch size, every buffer of every column read.
// Each repetition runs every arm once in a rotating order; the report
// gives medians and the ratios P5, P6b, P7 and P8 of the issue.
//
//	go run ./bench/peers run [flags]      the benchmark (bench/run.sh wraps it)
//	go run ./bench/peers gen [flags]      only generate the data
//	go run ./bench/peers report FILE.json     rewrite FILE.md and the plots from a run's JSON
//	go run ./bench/peers proxy -upstream URL [-latency 20ms -bandwidth 80e6]
//	                                       the shaping proxy alone, for manual runs
//
// bench/peers/README.md explains the method and the numbers.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench-peers: ")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peers run|gen|consume|report|proxy [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "gen":
		err = genMain(os.Args[2:])
	case "consume":
		err = consumeCmd(os.Args[2:])
	case "proxy":
		err = proxyMain(os.Args[2:])
	case "report":
		err = reportMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

// dataFlags are the dataset sizes, shared by run and gen.
type dataFlags struct {
	full                  bool
	tableFiles, blobFiles int
	tableRows, blobRows   int64
	tableBatch, blobBatch int
	tableRG, blobRG       int64
	kinds                 string
}

func (d *dataFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&d.full, "full", false, "the issue's full size: ~1.25 GB (32 table files, 16 blob files) instead of ~330 MB")
	fs.IntVar(&d.tableFiles, "table-files", 8, "table: Parquet files")
	fs.Int64Var(&d.tableRows, "table-rows", 30*16384, "table: rows per file")
	fs.Int64Var(&d.tableRG, "table-row-group", 16384, "table: rows per row group")
	fs.IntVar(&d.tableBatch, "table-batch", 16384, "table: rows per batch (zenithfs --batch-size, the peers' Parquet batch size)")
	fs.IntVar(&d.blobFiles, "blob-files", 4, "blobs: Parquet files")
	fs.Int64Var(&d.blobRows, "blob-rows", 512, "blobs: rows (64 KiB each) per file")
	fs.Int64Var(&d.blobRG, "blob-row-group", 16, "blobs: rows per row group")
	fs.IntVar(&d.blobBatch, "blob-batch", 16, "blobs: rows per batch")
	fs.StringVar(&d.kinds, "datasets", "table,blobs", "datasets to use: table, blobs")
}

func (d *dataFlags) datasets() ([]Dataset, error) {
	if d.full {
		d.tableFiles, d.blobFiles = 32, 16
	}
	var out []Dataset
	for _, k := range strings.Split(d.kinds, ",") {
		switch strings.TrimSpace(k) {
		case "table":
			out = append(out, Dataset{Name: "table", Files: d.tableFiles, RowsPerFile: d.tableRows, RowGroup: d.tableRG, Batch: d.tableBatch})
		case "blobs":
			out = append(out, Dataset{Name: "blobs", Files: d.blobFiles, RowsPerFile: d.blobRows, RowGroup: d.blobRG, Batch: d.blobBatch})
		default:
			return nil, fmt.Errorf("unknown dataset %q", k)
		}
	}
	return out, nil
}

func genMain(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	var df dataFlags
	df.register(fs)
	data := fs.String("data", "bench/data/peers", "data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dss, err := df.datasets()
	if err != nil {
		return err
	}
	for _, d := range dss {
		dir, n, err := Generate(*data, d)
		if err != nil {
			return err
		}
		log.Printf("%s: %s, %.1f MiB", d.Name, dir, float64(n)/(1<<20))
	}
	return nil
}

func consumeCmd(args []string) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	mode := fs.String("mode", "ipc", "ipc (batch files of a directory) | parquet (Parquet files of a directory) | sdk (objects under bucket/prefix)")
	target := fs.String("target", "", "directory, or bucket/prefix/ for sdk")
	batch := fs.Int("batch", 16384, "rows per batch (parquet, sdk)")
	inflight := fs.Int("inflight", 4, "sdk: row-group GETs in flight ahead of the decoder")
	shuffled := fs.Bool("shuffled", false, "parquet, sdk: read row groups in a seeded shuffled order")
	seed := fs.Uint64("seed", 1, "shuffle seed")
	epoch := fs.Uint64("epoch", 0, "shuffle epoch")
	endpoint := fs.String("endpoint", "", "sdk: S3 endpoint URL")
	maxSecs := fs.Float64("max-seconds", 0, "stop after this long and report a partial epoch (0: no limit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return consumeMain(*mode, *target, *batch, *inflight, *shuffled, *seed, *epoch, *endpoint,
		time.Duration(*maxSecs*float64(time.Second)))
}

func proxyMain(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	up := fs.String("upstream", "http://127.0.0.1:7070", "S3 server URL (loopback)")
	lat := fs.Duration("latency", 20*time.Millisecond, "first-byte latency per request")
	bw := fs.Float64("bandwidth", 80e6, "bytes/s per response stream (0: no cap)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := StartProxy(*up, Shape{Latency: *lat, Bandwidth: *bw})
	if err != nil {
		return err
	}
	fmt.Printf("proxy %s → %s (%s); Ctrl-C stops\n", p.URL, *up, Shape{Latency: *lat, Bandwidth: *bw})
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	c := p.Counts()
	fmt.Printf("requests %d, object GETs %d, bytes %d, listings %d, HEADs %d\n", c.Requests, c.GETs, c.Bytes, c.Lists, c.Heads)
	return p.Close()
}
