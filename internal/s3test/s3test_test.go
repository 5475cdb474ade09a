package s3test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func get(t *testing.T, s *Server, bucket, key string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func TestServerStopRestartKeepsObjects(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("endpoint %s is not on loopback", s.Endpoint)
	}
	bucket := s.NewBucket(t, "p/", map[string][]byte{"k": []byte("kept")})
	if b, err := get(t, s, bucket, "p/k"); err != nil || string(b) != "kept" {
		t.Fatalf("get = %q, %v", b, err)
	}
	s.Stop()
	if _, err := get(t, s, bucket, "p/k"); err == nil {
		t.Fatal("get from a stopped server succeeded")
	}
	s.Stop() // idempotent
	s.Restart(t)
	if b, err := get(t, s, bucket, "p/k"); err != nil || string(b) != "kept" {
		t.Fatalf("get after restart = %q, %v", b, err)
	}
}

func TestProxyInjectsFaults(t *testing.T) {
	s := Start(t)
	body := bytes.Repeat([]byte("x"), 100_000)
	bucket := s.NewBucket(t, "", map[string][]byte{"k": body})
	cases := []struct {
		name  string
		f     Faults
		check func(t *testing.T, resp *http.Response, err error)
	}{
		{"none", Faults{}, func(t *testing.T, resp *http.Response, err error) {
			if err != nil || resp.StatusCode != http.StatusForbidden { // unsigned: the server's own answer
				t.Fatalf("got %v, %v; want the server's 403", resp, err)
			}
		}},
		{"5xx", Faults{Error5xx: 1}, func(t *testing.T, resp *http.Response, err error) {
			if err != nil || resp.StatusCode < 500 {
				t.Fatalf("got %v, %v; want a 5xx", resp, err)
			}
		}},
		{"reset", Faults{Reset: 1}, func(t *testing.T, resp *http.Response, err error) {
			if err == nil {
				t.Fatalf("got %v; want a connection error", resp.Status)
			}
		}},
		{"hang", Faults{Hang: true}, func(t *testing.T, resp *http.Response, err error) {
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, %v; want a client timeout", resp, err)
			}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewProxy(t, s.Endpoint, tc.f, uint64(i))
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/"+bucket+"/k", nil)
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err == nil {
				defer resp.Body.Close()
			}
			tc.check(t, resp, err)
		})
	}

	t.Run("cut body", func(t *testing.T) {
		p := NewProxy(t, s.Endpoint, Faults{CutBody: 1}, 9)
		o := s.Client().Options()
		o.BaseEndpoint = aws.String(p.URL)
		client := s3.New(o)
		out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
		if err != nil {
			t.Fatal(err)
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err == nil || len(b) >= len(body) {
			t.Fatalf("read %d of %d bytes, err %v; want a cut body", len(b), len(body), err)
		}
		if st := p.Stats(); st.Cuts != 1 {
			t.Errorf("stats %+v, want 1 cut", st)
		}
	})
}
