package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/internal/s3test"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/source"
)

// The real binary against a real S3 server (versitygw on loopback), with
// credentials from the environment as a user would give them.

// s3Env points the AWS chain of the binaries this test runs at the given
// credentials, and away from anything on this machine (profiles, IMDS).
func s3Env(t *testing.T, access, secret string) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": s3test.Region,
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_PROFILE": "", "AWS_SESSION_TOKEN": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
		if v == "" {
			os.Unsetenv(k) // t.Setenv restores it afterwards
		}
	}
}

// s3Data writes Parquet files (row groups smaller and larger than the
// 1000-row batches) to a local directory and uploads the same bytes under
// bucket/ds/train/.
func s3Data(t *testing.T, srv *s3test.Server) (local, bucket string) {
	t.Helper()
	local = t.TempDir()
	files := map[string][]byte{}
	for _, f := range []struct {
		name     string
		rows, rg int64
	}{{"part-0.parquet", 3500, 300}, {"part-1.parquet", 4200, 1600}, {"part-2.parquet", 700, 700}} {
		p := filepath.Join(local, f.name)
		if err := sampledata.WriteParquet(p, f.rows, f.rg); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[f.name] = b
	}
	return local, srv.NewBucket(t, "ds/train/", files)
}

type epoch struct {
	man   dataset.Manifest
	data  [][]byte
	sizes []int64
}

func readEpoch(t *testing.T, dir string) epoch {
	t.Helper()
	var e epoch
	b, err := os.ReadFile(filepath.Join(dir, "_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &e.man); err != nil {
		t.Fatalf("manifest: %v\n%s", err, b)
	}
	for k := 0; k < e.man.Batches; k++ {
		p := filepath.Join(dir, fmt.Sprintf("%06d.arrow", k))
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		e.data, e.sizes = append(e.data, b), append(e.sizes, fi.Size())
	}
	return e
}

func s3Stats(t *testing.T, mnt string) []source.S3Stats {
	t.Helper()
	var st struct {
		S3 []source.S3Stats `json:"s3"`
	}
	readStats(t, mnt, &st)
	return st.S3
}

// readStats decodes the mount's .zenith/stats into v.
func readStats(t *testing.T, mnt string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mnt, ".zenith", "stats"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf(".zenith/stats: %v\n%s", err, b)
	}
}

func TestS3MountEndToEnd(t *testing.T) {
	srv := s3test.Start(t)
	local, bucket := s3Data(t, srv)
	s3Env(t, srv.AccessKey, srv.SecretKey)
	common := []string{"--batch-size", "1000", "--gpus", "0"}
	mntLocal := mountDaemon(t, append([]string{"--dataset", "d=" + local}, common...)...)
	mnt := mountDaemon(t, append([]string{"--s3-endpoint", srv.Endpoint, "--dataset", "d=s3://" + bucket + "/ds/train"}, common...)...)

	want, got := readEpoch(t, filepath.Join(mntLocal, "d")), readEpoch(t, filepath.Join(mnt, "d"))
	if got.man.Rows != 8400 || got.man.Batches != 9 || len(got.man.Sources) != 3 {
		t.Fatalf("S3 manifest: %d rows, %d batches, %d sources; want 8400, 9, 3", got.man.Rows, got.man.Batches, len(got.man.Sources))
	}
	for k := range want.data {
		if got.sizes[k] != want.sizes[k] || !bytes.Equal(got.data[k], want.data[k]) {
			t.Fatalf("batch %d: S3 (stat %d, %d bytes) differs from local (stat %d, %d bytes)",
				k, got.sizes[k], len(got.data[k]), want.sizes[k], len(want.data[k]))
		}
	}
	for _, s := range got.man.Sources {
		if s.ETag == "" || !strings.HasPrefix(s.Key, "ds/train/part-") {
			t.Errorf("manifest source %+v: want an ETag and a key under ds/train/", s)
		}
	}
	// The endpoint may come from the AWS chain (AWS_ENDPOINT_URL_S3) instead of the flag.
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
	viaEnv := mountDaemon(t, append([]string{"--dataset", "d=s3://" + bucket + "/ds/train/part-1.parquet"}, common...)...)
	one := readEpoch(t, filepath.Join(viaEnv, "d"))
	if len(one.man.Sources) != 1 || one.man.Rows != 4200 || one.man.Sources[0].Key != "ds/train/part-1.parquet" {
		t.Fatalf("single-object dataset through AWS_ENDPOINT_URL_S3: %+v", one.man)
	}
	os.Unsetenv("AWS_ENDPOINT_URL_S3")

	st := s3Stats(t, mnt)
	if len(st) != 1 || st[0].GETs == 0 || st[0].BytesFetched == 0 || st[0].Errors != 0 {
		t.Fatalf(".zenith/stats s3 = %+v: want one store with GETs and bytes, no errors", st)
	}
	t.Logf("s3 stats after index + epoch: %+v", st[0])

	// An object rewritten while mounted: the next opens see the new rows,
	// the manifest the new ETag.
	for k := range got.data { // the kernel holds entries of the first generation
		os.Stat(filepath.Join(mnt, "d", fmt.Sprintf("%06d.arrow", k)))
	}
	p := filepath.Join(t.TempDir(), "x.parquet")
	if err := sampledata.WriteParquet(p, 2000, 500); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	srv.Put(t, bucket, "ds/train/part-0.parquet", b)
	head, err := srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("ds/train/part-0.parquet")})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the default --check-interval
	after := readEpoch(t, filepath.Join(mnt, "d"))
	if after.man.Rows != 6900 || after.man.Generation <= got.man.Generation || after.man.Sources[0].ETag != strings.Trim(aws.ToString(head.ETag), `"`) {
		t.Fatalf("after the rewrite: rows %d (want 6900), generation %d (was %d), ETag %s (want %s)",
			after.man.Rows, after.man.Generation, got.man.Generation, after.man.Sources[0].ETag, aws.ToString(head.ETag))
	}
	for k := range after.data {
		if after.sizes[k] != int64(len(after.data[k])) {
			t.Fatalf("after the rewrite: batch %d: stat size %d, read %d bytes", k, after.sizes[k], len(after.data[k]))
		}
	}
	// Batch 1 is rows 1000..2000 of the new part-0: ids 1000..1999.
	r, err := ipc.NewFileReader(bytes.NewReader(after.data[1]))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.RecordBatch(0)
	if err != nil {
		t.Fatal(err)
	}
	ref := sampledata.MixedRecord(1000, 1000)
	for c := 0; c < int(ref.NumCols()); c++ {
		if !array.Equal(ref.Column(c), rec.Column(c)) {
			t.Fatalf("batch 1 after the rewrite: column %s is not rows 1000..2000 of the new object", ref.ColumnName(c))
		}
	}
}

func TestS3MountStartupErrorsAreOneClearLine(t *testing.T) {
	srv := s3test.Start(t)
	_, bucket := s3Data(t, srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() // nothing listens there once closed
	l.Close()
	cases := []struct {
		name             string
		access, secret   string
		endpoint, bucket string
		want             string
	}{
		{"wrong secret", srv.AccessKey, "not-the-secret", srv.Endpoint, bucket, "access denied"},
		{"unknown access key", "nobody", srv.SecretKey, srv.Endpoint, bucket, "access denied"},
		{"missing bucket", srv.AccessKey, srv.SecretKey, srv.Endpoint, "no-such-bucket", `bucket "no-such-bucket" does not exist`},
		{"no credentials", "", "", srv.Endpoint, bucket, "no AWS credentials"},
		{"endpoint down", srv.AccessKey, srv.SecretKey, closed, bucket, "cannot reach endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s3Env(t, c.access, c.secret)
			if c.access == "" {
				os.Unsetenv("AWS_ACCESS_KEY_ID")
				os.Unsetenv("AWS_SECRET_ACCESS_KEY")
			}
			mnt := t.TempDir()
			start := time.Now()
			r := zenith(t, "mount", "--state-dir", t.TempDir(), "--s3-endpoint", c.endpoint,
				"--dataset", "d=s3://"+c.bucket+"/ds/train", mnt)
			took := time.Since(start)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Fatalf("exit %d, stderr %q: want exit 1 and one line containing %q", r.code, r.stderr, c.want)
			}
			t.Logf("%s (after %s)", lines[0], took.Round(time.Millisecond))
			if mounted(mnt) {
				t.Fatal("a failed start left a mount behind")
			}
			if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
				t.Fatalf("the mountpoint is not left empty: %v", ents)
			}
		})
	}
}
