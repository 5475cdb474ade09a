package source

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// How ReadRanges works: the ranges are sorted by offset; adjacent ones (or
// ones at most MergeGap apart) join one span; each span is cut into parts of
// at most PartSize bytes, one ranged GET each. A part streams its body
// straight into the callers' buffers (segment by segment, discarding gaps),
// so no bytes are copied twice. Parts run in parallel, bounded by the
// store-wide semaphore; each part is retried on its own.

// segment is the piece of one caller range that one part fills.
type segment struct {
	ri     int   // index into ranges
	bufOff int   // offset into ranges[ri].Buf
	objOff int64 // object offset of that byte
	n      int   // bytes wanted
	got    int   // bytes filled
	part   *s3Part
}

// s3Part is one ranged GET of [start, end).
type s3Part struct {
	start, end int64
	segs       []*segment
	etag       string
	err        error
}

// ReadRanges implements RangeReader with parallel ranged GETs. Each range's
// N and Err are set; Err is io.EOF for a range cut short by the end of the
// object, and the returned error is the first range error, naming the key,
// the byte range and the cause.
func (s *S3) ReadRanges(ctx context.Context, key string, ranges []Range) error {
	parts, segsOf := s.plan(ranges)
	want := expectedETag(ctx)
	if len(parts) == 1 {
		parts[0].err = s.fetchPart(ctx, key, parts[0], ranges, want)
	} else {
		// At most Concurrency workers per call; the store-wide semaphore
		// bounds the GETs of all calls together.
		var (
			wg   sync.WaitGroup
			next atomic.Int64
		)
		for w := min(len(parts), cap(s.sem)); w > 0; w-- {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < int64(len(parts)); i = next.Add(1) - 1 {
					parts[i].err = s.fetchPart(ctx, key, parts[i], ranges, want)
				}
			}()
		}
		wg.Wait()
	}

	// Parts of one call must all have seen the same version of the object.
	var etag string
	for _, p := range parts {
		if p.err != nil || p.etag == "" {
			continue
		}
		if etag == "" {
			etag = p.etag
		} else if p.etag != etag {
			err := fmt.Errorf("s3 read %s: ETag %s then %s: %w", s.url(key), etag, p.etag, ErrObjectChanged)
			for _, q := range parts {
				if q.err == nil {
					q.err = err
				}
			}
			break
		}
	}

	var first error
	for i := range ranges {
		r := &ranges[i]
		if r.Off < 0 {
			r.N, r.Err = 0, fmt.Errorf("s3 read %s at %d: negative offset", s.url(key), r.Off)
		} else {
			r.N, r.Err = 0, nil
			short := false
			for _, sg := range segsOf[i] {
				if sg.part.err != nil {
					r.Err = sg.part.err
					break
				}
				if !short {
					r.N += sg.got
				}
				short = short || sg.got < sg.n
			}
			if r.Err == nil && r.N < len(r.Buf) {
				r.Err = io.EOF
			}
		}
		if r.Err != nil && first == nil {
			first = r.Err
			if r.Err == io.EOF {
				first = fmt.Errorf("s3 read %s at %d: %w", s.url(key), r.Off, io.EOF)
			}
		}
	}
	return first
}

// plan cuts the ranges into parts and returns, per range, its segments in
// buffer order.
func (s *S3) plan(ranges []Range) ([]*s3Part, [][]*segment) {
	order := make([]int, 0, len(ranges))
	for i, r := range ranges {
		if r.Off >= 0 && len(r.Buf) > 0 {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return ranges[order[a]].Off < ranges[order[b]].Off })

	segsOf := make([][]*segment, len(ranges))
	var (
		parts   []*s3Part
		cur     *s3Part
		spanEnd int64 = -1
	)
	for _, ri := range order {
		r := ranges[ri]
		// A range joins the current span only if it starts at or after its
		// end (overlaps can't be streamed once) and within MergeGap of it.
		if r.Off < spanEnd || r.Off-spanEnd > s.mergeGap {
			cur = nil
		}
		off, bo, rem := r.Off, 0, len(r.Buf)
		for rem > 0 {
			if cur == nil || off >= cur.start+s.partSize {
				cur = &s3Part{start: off}
				parts = append(parts, cur)
			}
			take := int(min(int64(rem), cur.start+s.partSize-off))
			sg := &segment{ri: ri, bufOff: bo, objOff: off, n: take, part: cur}
			cur.segs = append(cur.segs, sg)
			segsOf[ri] = append(segsOf[ri], sg)
			cur.end = off + int64(take)
			off += int64(take)
			bo += take
			rem -= take
		}
		spanEnd = off
	}
	return parts, segsOf
}

// fetchPart GETs one part into its segments, with retries. Bytes past the
// end of the object leave their segments short (got < n), which is no error.
func (s *S3) fetchPart(ctx context.Context, key string, p *s3Part, ranges []Range, ifMatch string) error {
	rangeHdr := fmt.Sprintf("bytes=%d-%d", p.start, p.end-1)
	// The slot is taken before the attempts start: time spent queued
	// behind other parts must not count against an attempt's timeout (a
	// busy store would otherwise fail healthy requests as unanswered).
	if err := acquire(ctx, s.sem); err != nil {
		return s.fail(fmt.Errorf("s3 GET %s %s: %w", s.url(key), rangeHdr, err))
	}
	defer func() { <-s.sem }()
	err := s.retry(ctx, func(actx context.Context) error {
		p.etag = ""
		for _, sg := range p.segs {
			sg.got = 0
		}
		in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.objectKey(key)), Range: aws.String(rangeHdr)}
		if ifMatch != "" {
			in.IfMatch = aws.String(`"` + ifMatch + `"`)
		}
		s.gets.Add(1)
		out, err := s.client.GetObject(actx, in)
		if err != nil {
			if status, code := responseStatus(err); status == http.StatusRequestedRangeNotSatisfiable || code == "InvalidRange" {
				return nil // the part starts at or past the end: all short
			}
			return err
		}
		defer out.Body.Close()
		p.etag = unquote(aws.ToString(out.ETag))
		return s.scatter(out, p, ranges)
	})
	if err != nil {
		return s.fail(fmt.Errorf("s3 GET %s %s: %w", s.url(key), rangeHdr, classify(err)))
	}
	return nil
}

// scatter streams a GET body into the part's segments. The response covers
// object bytes [start, start+length); a server that ignored the Range header
// answers from offset 0, which is skipped over.
func (s *S3) scatter(out *s3.GetObjectOutput, p *s3Part, ranges []Range) error {
	ext := bodyExtent(out, p.start)
	start, avail, known := ext.start, ext.end, ext.known
	if ext.ranged {
		// A ranged answer must start where asked and, short of the
		// object's end, reach as far as asked: a proxy that caps ranges
		// would otherwise pass for the object's end.
		if start > p.start {
			return fmt.Errorf("%w: asked for bytes from %d, the answer starts at %d", errShortBody, p.start, start)
		}
		if avail < p.end && (ext.total < 0 || avail < ext.total) {
			return fmt.Errorf("%w: asked for bytes up to %d, the answer ends at %d of %d", errShortBody, p.end, avail, ext.total)
		}
	}
	body := &countingReader{r: out.Body, n: &s.bytes}
	pos := start
	for _, sg := range p.segs {
		if skip := sg.objOff - pos; skip > 0 {
			if known {
				skip = min(skip, avail-pos)
			}
			if skip > 0 {
				if _, err := io.CopyN(io.Discard, body, skip); err != nil {
					return fmt.Errorf("read body: %w", err)
				}
				pos += skip
			}
		}
		want := sg.n
		if known {
			want = int(max(0, min(int64(sg.n), avail-sg.objOff)))
		}
		if want == 0 {
			continue
		}
		buf := ranges[sg.ri].Buf[sg.bufOff : sg.bufOff+want]
		n, err := io.ReadFull(body, buf)
		sg.got = n
		pos = sg.objOff + int64(n)
		if err != nil {
			if !known && body.err == io.EOF {
				return nil // no length given: the body's clean end is the object's
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read body at %d: %w", pos, err)
		}
	}
	return nil
}

// extent is where a GET body lies in the object, from Content-Range and
// Content-Length: bytes [start, end), known when either header gave it;
// ranged when Content-Range did, and then total is the object's size, or
// -1 when it said "*".
type extent struct {
	start, end, total int64
	known, ranged     bool
}

// bodyExtent reads out's headers for the body of a GET that asked for
// bytes from requested.
func bodyExtent(out *s3.GetObjectOutput, requested int64) extent {
	e := extent{start: requested, total: -1}
	if cr := aws.ToString(out.ContentRange); cr != "" {
		// "bytes a-b/total"
		spec, total, _ := strings.Cut(strings.TrimPrefix(cr, "bytes "), "/")
		as, bs, ok := strings.Cut(spec, "-")
		a, errA := strconv.ParseInt(as, 10, 64)
		b, errB := strconv.ParseInt(bs, 10, 64)
		if ok && errA == nil && errB == nil {
			if n, err := strconv.ParseInt(total, 10, 64); err == nil {
				e.total = n
			}
			e.start, e.end, e.known, e.ranged = a, b+1, true, true
			return e
		}
	} else {
		e.start = 0 // a full-object answer
	}
	if out.ContentLength != nil {
		e.end, e.known = e.start+*out.ContentLength, true
	}
	return e
}

type countingReader struct {
	r   io.Reader
	n   interface{ Add(int64) int64 }
	err error // the last error of r: io.EOF only at a clean end
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if err != nil {
		c.err = err
	}
	return n, err
}

// errShortBody: a ranged answer that does not cover what was asked.
// io.ErrUnexpectedEOF makes it a transient error, retried.
var errShortBody = fmt.Errorf("short range answer: %w", io.ErrUnexpectedEOF)

func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
