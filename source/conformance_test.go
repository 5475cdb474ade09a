package source_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/internal/s3test"
	"github.com/zenithfs/zenithfs/source"
	"github.com/zenithfs/zenithfs/source/storetest"
)

func TestLocalConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, files map[string][]byte) storetest.Fixture {
		dir := t.TempDir()
		put := func(t *testing.T, key string, data []byte) {
			p := filepath.Join(dir, filepath.FromSlash(key))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range files {
			put(t, k, v)
		}
		return storetest.Fixture{
			Store: source.NewLocal(dir),
			Put: func(t *testing.T, key string, data []byte) {
				// Local identity is size + mtime: a same-size rewrite within
				// one tick of the kernel's coarse clock would keep the mtime.
				time.Sleep(20 * time.Millisecond)
				put(t, key, data)
			},
		}
	})
}

// s3Decoys lie next to the store's prefix; no store may list them.
var s3Decoys = map[string][]byte{"data-x": []byte("decoy"), "datax/y": []byte("decoy"), "other/obj": []byte("decoy")}

func TestS3Conformance(t *testing.T) {
	srv := s3test.Start(t)
	variants := []struct {
		name string
		opts source.S3Options
	}{
		{"small parts", source.S3Options{PartSize: 64 << 10, Concurrency: 4}},
		{"merged ranges", source.S3Options{PartSize: 1 << 20, MergeGap: 100 << 10}},
		{"defaults", source.S3Options{}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, files map[string][]byte) storetest.Fixture {
				bucket := srv.NewBucket(t, "data/", files)
				for k, d := range s3Decoys {
					srv.Put(t, bucket, k, d)
				}
				opts := v.opts
				opts.Bucket, opts.Prefix = bucket, "data"
				return storetest.Fixture{
					Store: newS3(t, srv.Endpoint, srv, opts),
					Put:   func(t *testing.T, key string, data []byte) { srv.Put(t, bucket, "data/"+key, data) },
				}
			})
		})
	}
}

// newS3 opens an S3 store on endpoint with the server's credentials and
// test-sized timeouts, failing the test on error.
func newS3(t testing.TB, endpoint string, srv *s3test.Server, opts source.S3Options) *source.S3 {
	t.Helper()
	opts.Endpoint = endpoint
	opts.Credentials = srv.Credentials()
	opts.Region = srv.Region
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Backoff == 0 {
		opts.Backoff = 10 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := source.NewS3(ctx, opts)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return s
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
