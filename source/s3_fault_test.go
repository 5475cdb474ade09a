package source_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/internal/s3test"
	"github.com/zenithfs/zenithfs/source"
	"github.com/zenithfs/zenithfs/source/storetest"
)

// TestS3TransientFaultsKeepBytesIdentical: with 5xx answers, connection
// resets, bodies cut short and delays injected into a fraction of the
// requests, every read still returns exactly the object's bytes.
func TestS3TransientFaultsKeepBytesIdentical(t *testing.T) {
	srv := s3test.Start(t)
	data := storetest.Bytes(30, 2<<20+77)
	files := map[string][]byte{"a/obj": data, "a/small": data[:999], "b/other": data[:5]}
	bucket := srv.NewBucket(t, "ds/", files)
	proxy := s3test.NewProxy(t, srv.Endpoint, s3test.Faults{}, 1)
	s := newS3(t, proxy.URL, srv, source.S3Options{
		Bucket: bucket, Prefix: "ds", PartSize: 64 << 10, Concurrency: 8, Retries: 10,
	})
	proxy.SetFaults(s3test.Faults{Error5xx: 0.08, Reset: 0.06, CutBody: 0.08, DelayRate: 0.1, Delay: 30 * time.Millisecond})

	ctx := ctxT(t, 2*time.Minute)
	r := rand.New(rand.NewPCG(30, 30))
	for round := 0; round < 6; round++ {
		list, err := s.List(ctx, "a/")
		if err != nil || len(list) != 2 {
			t.Fatalf("round %d: List = %+v, %v", round, list, err)
		}
		info, err := s.Stat(ctx, "a/obj")
		if err != nil || info.Size != int64(len(data)) {
			t.Fatalf("round %d: Stat = %+v, %v", round, info, err)
		}
		whole := make([]byte, len(data))
		if n, err := s.ReadAt(ctx, "a/obj", whole, 0); n != len(data) || err != nil || !bytes.Equal(whole, data) {
			t.Fatalf("round %d: ReadAt(whole) = %d, %v or bytes differ", round, n, err)
		}
		var rs []source.Range
		for i := 0; i < 20; i++ {
			off := r.IntN(len(data))
			rs = append(rs, source.Range{Off: int64(off), Buf: make([]byte, r.IntN(min(300<<10, len(data)-off))+1)})
		}
		if err := s.ReadRanges(ctx, "a/obj", rs); err != nil {
			t.Fatalf("round %d: ReadRanges: %v", round, err)
		}
		for i, rg := range rs {
			if rg.N != len(rg.Buf) || !bytes.Equal(rg.Buf, data[rg.Off:rg.Off+int64(rg.N)]) {
				t.Fatalf("round %d: range %d (off %d, len %d): N %d or bytes differ", round, i, rg.Off, len(rg.Buf), rg.N)
			}
		}
	}
	ps, st := proxy.Stats(), s.Stats()
	t.Logf("proxy %+v; store %+v", ps, st)
	if ps.Errors5xx == 0 || ps.Resets == 0 || ps.Cuts == 0 || ps.Delays == 0 {
		t.Errorf("not every fault was injected: %+v", ps)
	}
	// Every 5xx reaches the store; net/http itself replays some requests
	// whose reused connection was reset before answering.
	if st.Retries < ps.Errors5xx {
		t.Errorf("store retried %d times, fewer than the %d 5xx answers injected", st.Retries, ps.Errors5xx)
	}
	if st.Errors != 0 {
		t.Errorf("%d operations failed for good", st.Errors)
	}
}

// TestS3HangingEndpointFailsInBoundedTime: an endpoint that accepts
// connections but never answers fails a read after Retries+1 timed-out
// attempts, with an error naming the key, the byte range and the cause.
func TestS3HangingEndpointFailsInBoundedTime(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": storetest.Bytes(31, 100_000)})
	proxy := s3test.NewProxy(t, srv.Endpoint, s3test.Faults{}, 2)
	s := newS3(t, proxy.URL, srv, source.S3Options{Bucket: bucket, Retries: 2, Timeout: 300 * time.Millisecond})
	proxy.SetFaults(s3test.Faults{Hang: true})

	start := time.Now()
	_, err := s.ReadAt(ctxT(t, time.Minute), "obj", make([]byte, 1000), 500)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("ReadAt from a hanging endpoint succeeded")
	}
	t.Logf("after %s: %v", elapsed, err)
	if elapsed > 5*time.Second {
		t.Errorf("ReadAt took %s; want about 3 × 300ms", elapsed)
	}
	for _, w := range []string{"/obj", "bytes=500-1499", "no answer within 300ms", "after 3 attempts"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if !errors.Is(err, source.ErrUnreachable) {
		t.Errorf("error %v does not wrap ErrUnreachable", err)
	}
	if ps := proxy.Stats(); ps.Hangs != 3 {
		t.Errorf("proxy held %d requests, want 3 attempts", ps.Hangs)
	}
	if st := s.Stats(); st.Retries != 2 || st.Errors != 1 || st.LastError != err.Error() {
		t.Errorf("stats %+v: want 2 retries, 1 error, the read's error as LastError", st)
	}
}

// TestS3ServerStoppedMidRead: reads in flight when the server goes away
// either ride out a short outage (their retries span the restart) or fail
// within a bounded time with a clear error; once the server is back, reads
// return identical bytes again.
func TestS3ServerStoppedMidRead(t *testing.T) {
	srv := s3test.Start(t)
	data := storetest.Bytes(32, 4<<20)
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": data})
	// Delays keep parts in flight while the server stops.
	proxy := s3test.NewProxy(t, srv.Endpoint, s3test.Faults{DelayRate: 1, Delay: 150 * time.Millisecond}, 3)
	opts := source.S3Options{Bucket: bucket, PartSize: 256 << 10, Concurrency: 4, Timeout: 2 * time.Second}

	readAll := func(s *source.S3) ([]byte, error, time.Duration) {
		buf := make([]byte, len(data))
		start := time.Now()
		_, err := s.ReadAt(ctxT(t, time.Minute), "obj", buf, 0)
		return buf, err, time.Since(start)
	}

	t.Run("outage shorter than the retries", func(t *testing.T) {
		opts := opts
		opts.Retries, opts.Backoff = 30, 50*time.Millisecond
		s := newS3(t, proxy.URL, srv, opts)
		type result struct {
			buf []byte
			err error
		}
		done := make(chan result, 1)
		go func() { b, err, _ := readAll(s); done <- result{b, err} }()
		time.Sleep(200 * time.Millisecond)
		srv.Stop()
		time.Sleep(500 * time.Millisecond)
		srv.Restart(t)
		res := <-done
		if res.err != nil || !bytes.Equal(res.buf, data) {
			t.Fatalf("read across a restart: %v (or bytes differ)", res.err)
		}
		if st := s.Stats(); st.Retries == 0 {
			t.Errorf("no retries across a server restart: %+v", st)
		}
	})

	t.Run("outage longer than the retries", func(t *testing.T) {
		opts := opts
		opts.Retries, opts.Backoff = 2, 20*time.Millisecond
		s := newS3(t, proxy.URL, srv, opts)
		direct := newS3(t, srv.Endpoint, srv, opts)
		type result struct {
			err error
			d   time.Duration
		}
		done := make(chan result, 1)
		go func() { _, err, d := readAll(s); done <- result{err, d} }()
		time.Sleep(200 * time.Millisecond)
		srv.Stop()
		res := <-done
		if res.err == nil {
			t.Fatal("read while the server is down succeeded")
		}
		t.Logf("through the proxy, after %s: %v", res.d, res.err)
		if res.d > 15*time.Second {
			t.Errorf("failing read took %s", res.d)
		}
		if !strings.Contains(res.err.Error(), "after 3 attempts") || !strings.Contains(res.err.Error(), "bytes=") {
			t.Errorf("error %q does not name the attempts and range", res.err)
		}
		_, err, d := readAll(direct)
		t.Logf("direct, after %s: %v", d, err)
		if !errors.Is(err, source.ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("direct read from a stopped server = %v, want ErrUnreachable (connection refused)", err)
		}
		if d > 15*time.Second {
			t.Errorf("failing direct read took %s", d)
		}

		srv.Restart(t)
		for name, st := range map[string]*source.S3{"proxy": s, "direct": direct} {
			buf, err, _ := readAll(st)
			if err != nil || !bytes.Equal(buf, data) {
				t.Errorf("%s: read after the restart: %v (or bytes differ)", name, err)
			}
		}
	})
}

// TestS3CappedRangeAnswersAreRetried: a 206 that covers only part of the
// asked range (a gateway capping range sizes) is a short answer, retried,
// not the object's end: the bytes read are still the object's.
func TestS3CappedRangeAnswersAreRetried(t *testing.T) {
	srv := s3test.Start(t)
	data := storetest.Bytes(32, 1<<20+13)
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": data})
	proxy := s3test.NewProxy(t, srv.Endpoint, s3test.Faults{}, 3)
	s := newS3(t, proxy.URL, srv, source.S3Options{Bucket: bucket, PartSize: 64 << 10, Concurrency: 4, Retries: 20})
	proxy.SetFaults(s3test.Faults{CapRange: 0.3})
	whole := make([]byte, len(data))
	if n, err := s.ReadAt(ctxT(t, time.Minute), "obj", whole, 0); n != len(data) || err != nil || !bytes.Equal(whole, data) {
		t.Fatalf("ReadAt through capped ranges = %d of %d bytes, %v (or bytes differ)", n, len(data), err)
	}
	if ps, st := proxy.Stats(), s.Stats(); ps.Caps == 0 || st.Retries < ps.Caps {
		t.Errorf("proxy capped %d answers, store retried %d times", ps.Caps, st.Retries)
	}
}

// TestS3QueuedPartsKeepTheirTimeout: parts waiting for one of the store's
// Concurrency slots do not spend their attempt's timeout waiting: a slow
// but healthy endpoint serves six readers' parts one at a time.
func TestS3QueuedPartsKeepTheirTimeout(t *testing.T) {
	srv := s3test.Start(t)
	data := storetest.Bytes(33, 6*(64<<10))
	bucket := srv.NewBucket(t, "", map[string][]byte{"obj": data})
	proxy := s3test.NewProxy(t, srv.Endpoint, s3test.Faults{}, 4)
	s := newS3(t, proxy.URL, srv, source.S3Options{Bucket: bucket, PartSize: 64 << 10, Concurrency: 1, Retries: 1, Timeout: 500 * time.Millisecond})
	proxy.SetFaults(s3test.Faults{DelayRate: 1, Delay: 200 * time.Millisecond})
	ctx := ctxT(t, time.Minute)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := i * (64 << 10)
			buf := make([]byte, 64<<10)
			if n, err := s.ReadAt(ctx, "obj", buf, int64(off)); n != len(buf) || err != nil || !bytes.Equal(buf, data[off:off+len(buf)]) {
				t.Errorf("reader %d of six, 200 ms a part through one slot with a 500 ms timeout: %d bytes, %v", i, n, err)
			}
		}()
	}
	wg.Wait()
	if st := s.Stats(); st.Retries != 0 {
		t.Errorf("%d retries: parts timed out while queued", st.Retries)
	}
}
