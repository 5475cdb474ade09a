package source

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// endsWith is a body that gives data, then err.
type endsWith struct {
	r   *bytes.Reader
	err error
}

func (e *endsWith) Read(p []byte) (int, error) {
	n, _ := e.r.Read(p)
	if n == 0 {
		return 0, e.err
	}
	return n, nil
}

// A body of unknown length (no Content-Length, no Content-Range) ends the
// object only where it ends cleanly; a connection lost mid-body is an
// error, retried, not a shorter object.
func TestScatterUnknownLengthBody(t *testing.T) {
	for _, c := range []struct {
		end     error
		wantErr bool
	}{{io.EOF, false}, {io.ErrUnexpectedEOF, true}} {
		p := &s3Part{start: 0, end: 100}
		p.segs = []*segment{{ri: 0, objOff: 0, n: 100, part: p}}
		ranges := []Range{{Off: 0, Buf: make([]byte, 100)}}
		out := &s3.GetObjectOutput{Body: io.NopCloser(&endsWith{r: bytes.NewReader(make([]byte, 60)), err: c.end})}
		err := (&S3{}).scatter(out, p, ranges)
		if c.wantErr {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("body cut with %v: err %v, want ErrUnexpectedEOF", c.end, err)
			}
			continue
		}
		if err != nil || p.segs[0].got != 60 {
			t.Errorf("body ending cleanly after 60 bytes: got %d, err %v", p.segs[0].got, err)
		}
	}
}
