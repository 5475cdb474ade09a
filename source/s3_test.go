package source_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/zenithfs/zenithfs/internal/s3test"
	"github.com/zenithfs/zenithfs/source"
	"github.com/zenithfs/zenithfs/source/storetest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestS3FetchesEachByteOnce guards against redundant fetching: parts are
// PartSize, adjacent ranges share GETs, and bytes fetched equal bytes read.
func TestS3FetchesEachByteOnce(t *testing.T) {
	srv := s3test.Start(t)
	data := storetest.Bytes(20, 1<<20)
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": data})
	cases := []struct {
		name      string
		opts      source.S3Options
		ranges    []source.Range
		wantGETs  int64
		wantBytes int64
	}{
		{"one read in four parts", source.S3Options{PartSize: 256 << 10},
			[]source.Range{{Off: 0, Buf: make([]byte, 1<<20)}}, 4, 1 << 20},
		{"adjacent ranges in one GET", source.S3Options{},
			[]source.Range{{Off: 100, Buf: make([]byte, 1000)}, {Off: 1100, Buf: make([]byte, 50)}, {Off: 1150, Buf: make([]byte, 7)}}, 1, 1057},
		{"gap merged", source.S3Options{MergeGap: 4096},
			[]source.Range{{Off: 0, Buf: make([]byte, 100)}, {Off: 1000, Buf: make([]byte, 100)}}, 1, 1100},
		{"gap too wide", source.S3Options{MergeGap: 100},
			[]source.Range{{Off: 0, Buf: make([]byte, 100)}, {Off: 1000, Buf: make([]byte, 100)}}, 2, 200},
		{"tail past end", source.S3Options{},
			[]source.Range{{Off: 1<<20 - 10, Buf: make([]byte, 100)}}, 1, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Bucket = bucket
			s := newS3(t, srv.Endpoint, srv, opts)
			before := s.Stats()
			err := s.ReadRanges(ctxT(t, time.Minute), "obj", tc.ranges)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			for i, r := range tc.ranges {
				if !bytes.Equal(r.Buf[:r.N], data[r.Off:r.Off+int64(r.N)]) {
					t.Errorf("range %d: bytes differ", i)
				}
			}
			st := s.Stats()
			if got := st.GETs - before.GETs; got != tc.wantGETs {
				t.Errorf("GETs = %d, want %d", got, tc.wantGETs)
			}
			if got := st.BytesFetched - before.BytesFetched; got != tc.wantBytes {
				t.Errorf("bytes fetched = %d, want %d", got, tc.wantBytes)
			}
			if st.Retries != 0 || st.Errors != 0 {
				t.Errorf("retries %d, errors %d on a healthy server", st.Retries, st.Errors)
			}
		})
	}
}

func TestS3ExpectedETag(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": []byte("version one")})
	s := newS3(t, srv.Endpoint, srv, source.S3Options{Bucket: bucket})
	info, err := s.Stat(ctxT(t, time.Minute), "obj")
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag == "" || strings.Contains(info.ETag, `"`) {
		t.Fatalf("ETag %q: want a bare, non-empty tag", info.ETag)
	}
	p := make([]byte, 7)
	if _, err := s.ReadAt(source.WithExpectedETag(ctxT(t, time.Minute), info.ETag), "obj", p, 0); err != nil {
		t.Fatalf("read with the current ETag: %v", err)
	}
	srv.Put(t, bucket, "obj", []byte("version two"))
	_, err = s.ReadAt(source.WithExpectedETag(ctxT(t, time.Minute), info.ETag), "obj", p, 0)
	if !errors.Is(err, source.ErrObjectChanged) {
		t.Fatalf("read with a stale ETag = %v, want ErrObjectChanged", err)
	}
	if n, err := s.ReadAt(ctxT(t, time.Minute), "obj", p, 0); err != nil || string(p[:n]) != "version" {
		t.Fatalf("plain read after the change = %q, %v", p[:n], err)
	}
}

// TestS3StandardChain opens a store from the environment alone, as a mount
// with --s3-endpoint unset does: credentials, region and endpoint from AWS_*.
func TestS3StandardChain(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "p/", map[string][]byte{"k": []byte("hello")})
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
	s, err := source.NewS3(ctxT(t, time.Minute), source.S3Options{Bucket: bucket, Prefix: "p/"})
	if err != nil {
		t.Fatalf("NewS3 from the environment: %v", err)
	}
	p := make([]byte, 5)
	if n, err := s.ReadAt(ctxT(t, time.Minute), "k", p, 0); string(p[:n]) != "hello" || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt = %q, %v", p[:n], err)
	}
}

// isolateAWSEnv clears the AWS chain's inputs so that no test reads the
// machine's profiles or asks an instance metadata service.
func isolateAWSEnv(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// TestS3StartupErrors: what a mount says at start when it cannot work.
func TestS3StartupErrors(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "", map[string][]byte{"k": []byte("x")})
	cases := []struct {
		name     string
		opts     source.S3Options
		noCreds  bool
		wantErr  error
		wantText []string
	}{
		{"wrong secret", source.S3Options{Bucket: bucket,
			Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, "wrong", "")},
			false, source.ErrAccessDenied, []string{"access denied", bucket, "check AWS credentials"}},
		{"unknown access key", source.S3Options{Bucket: bucket,
			Credentials: credentials.NewStaticCredentialsProvider("nobody", "wrong", "")},
			false, source.ErrAccessDenied, []string{"access denied", "check AWS credentials"}},
		{"missing bucket", source.S3Options{Bucket: "no-such-bucket"},
			false, source.ErrBucketNotFound, []string{`bucket "no-such-bucket" does not exist`, srv.Endpoint}},
		{"no credentials", source.S3Options{Bucket: bucket},
			true, source.ErrNoCredentials, []string{"AWS_ACCESS_KEY_ID"}},
		{"dead endpoint", source.S3Options{Bucket: bucket, Endpoint: deadEndpoint(t)},
			false, source.ErrUnreachable, []string{"cannot reach endpoint http://127.0.0.1:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if opts.Endpoint == "" {
				opts.Endpoint = srv.Endpoint
			}
			opts.Region = srv.Region
			opts.Backoff = 10 * time.Millisecond
			opts.Timeout = 5 * time.Second
			if tc.noCreds {
				isolateAWSEnv(t)
			} else if opts.Credentials == nil {
				opts.Credentials = srv.Credentials()
			}
			start := time.Now()
			_, err := source.NewS3(ctxT(t, time.Minute), opts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("NewS3 = %v, want %v", err, tc.wantErr)
			}
			t.Logf("NewS3: %v", err)
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("NewS3 took %s", d)
			}
		})
	}
}

// deadEndpoint returns the URL of a loopback port nothing listens on.
func deadEndpoint(t *testing.T) string {
	srv := s3test.Start(t)
	srv.Stop()
	return srv.Endpoint
}

func TestS3CanceledContext(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": storetest.Bytes(21, 1000)})
	s := newS3(t, srv.Endpoint, srv, source.S3Options{Bucket: bucket})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.ReadAt(ctx, "obj", make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAt with a canceled context = %v, want context.Canceled", err)
	}
	if st := s.Stats(); st.Retries != 0 {
		t.Errorf("a canceled read was retried %d times", st.Retries)
	}
}

// TestS3ReusesConnections: sequential reads go over kept-alive connections
// (a new TCP connection per GET would dominate small reads).
func TestS3ReusesConnections(t *testing.T) {
	srv := s3test.Start(t)
	data := storetest.Bytes(22, 1<<20)
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": data})
	proxy := s3test.NewProxy(t, srv.Endpoint, s3test.Faults{}, 4)
	s := newS3(t, proxy.URL, srv, source.S3Options{Bucket: bucket, PartSize: 64 << 10, Concurrency: 4})
	for i := 0; i < 20; i++ {
		p := make([]byte, 256<<10)
		off := int64(i * 4096)
		if n, err := s.ReadAt(ctxT(t, time.Minute), "obj", p, off); n != len(p) || err != nil || !bytes.Equal(p, data[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d) = %d, %v or bytes differ", off, n, err)
		}
	}
	ps := proxy.Stats()
	t.Logf("%d requests over %d connections", ps.Requests, ps.Conns)
	if ps.Requests < 80 || ps.Conns > 8 {
		t.Errorf("%d requests over %d connections; want ≥ 80 requests over ≤ 8 connections", ps.Requests, ps.Conns)
	}
}
