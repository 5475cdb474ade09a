package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// newS3Client is an SDK client as a user would make one: the default
// credential chain (AWS_* environment), path-style addressing.
func newS3Client(ctx context.Context, endpoint string) (*s3.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// s3Object is an io.ReaderAt + io.Seeker over one object (ranged GETs),
// used for the Parquet footer; while a row group's bytes are held in rg,
// reads inside it are served from memory.
type s3Object struct {
	ctx         context.Context
	c           *s3.Client
	bucket, key string
	size        int64
	pos         int64
	rgOff       int64
	rg          []byte
}

func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.rgOff && off+int64(len(p)) <= o.rgOff+int64(len(o.rg)) {
		return copy(p, o.rg[off-o.rgOff:]), nil
	}
	if off >= o.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), o.size)
	b, err := getRange(o.ctx, o.c, o.bucket, o.key, off, end)
	n := copy(p, b)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

func (o *s3Object) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		o.pos = off
	case io.SeekCurrent:
		o.pos += off
	case io.SeekEnd:
		o.pos = o.size + off
	}
	return o.pos, nil
}

func (o *s3Object) Read(p []byte) (int, error) {
	n, err := o.ReadAt(p, o.pos)
	o.pos += int64(n)
	return n, err
}

// getRange fetches bytes [off, end) of an object with one ranged GET.
func getRange(ctx context.Context, c *s3.Client, bucket, key string, off, end int64) ([]byte, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end-1))})
	if err != nil {
		return nil, fmt.Errorf("get %s [%d,%d): %w", key, off, end, err)
	}
	defer out.Body.Close()
	b := make([]byte, end-off)
	n, err := io.ReadFull(out.Body, b)
	if err != nil {
		return b[:n], fmt.Errorf("get %s [%d,%d): %w", key, off, end, err)
	}
	return b, nil
}

// rowGroupRange is the byte range [start, end) of row group g: from its
// first column chunk's first page (dictionary or data) to its last byte.
func rowGroupRange(md *file.Reader, g int) (int64, int64, error) {
	rg := md.MetaData().RowGroup(g)
	start, end := int64(-1), int64(0)
	for i := 0; i < rg.NumColumns(); i++ {
		cc, err := rg.ColumnChunk(i)
		if err != nil {
			return 0, 0, err
		}
		s := cc.DataPageOffset()
		if cc.HasDictionaryPage() && cc.DictionaryPageOffset() > 0 && cc.DictionaryPageOffset() < s {
			s = cc.DictionaryPageOffset()
		}
		if start < 0 || s < start {
			start = s
		}
		end = max(end, s+cc.TotalCompressedSize())
	}
	if start < 0 {
		return 0, 0, errors.New("row group without columns")
	}
	return start, end, nil
}

// consumeSDK is the in-process arm: list the objects under prefix, read
// each footer with ranged GETs, then fetch each row group in the order
// (natural or shuffled) with one ranged GET — up to inflight ahead of the
// decoder, in order — and decode it from memory with the same Parquet
// settings as the FUSE arms.
func consumeSDK(endpoint, bucket, prefix string, batch, inflight int, shuffled bool, seed, epoch uint64, maxTime time.Duration) (Consumed, error) {
	ctx := context.Background()
	c := newConsumer(maxTime)
	client, err := newS3Client(ctx, endpoint)
	if err != nil {
		return c.done(), err
	}
	var keys []string
	sizes := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return c.done(), fmt.Errorf("list %s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, ".parquet") {
				keys = append(keys, k)
				sizes[k] = aws.ToInt64(o.Size)
			}
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return c.done(), fmt.Errorf("list %s/%s: no Parquet objects", bucket, prefix)
	}
	objs := make([]*s3Object, len(keys))
	readers := make([]*pqarrow.FileReader, len(keys))
	counts := make([]int, len(keys))
	for i, k := range keys {
		objs[i] = &s3Object{ctx: ctx, c: client, bucket: bucket, key: k, size: sizes[k]}
		pr, err := file.NewParquetReader(objs[i], file.WithReadProps(parquet.NewReaderProperties(memory.DefaultAllocator)))
		if err != nil {
			return c.done(), fmt.Errorf("parquet %s: %w", path.Base(k), err)
		}
		if readers[i], err = pqarrow.NewFileReader(pr, readProps(batch), memory.DefaultAllocator); err != nil {
			return c.done(), fmt.Errorf("parquet %s: %w", k, err)
		}
		counts[i] = pr.NumRowGroups()
		c.res.Files++
	}
	units := Order(counts, shuffled, seed, epoch)
	type fetched struct {
		off int64
		b   []byte
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]chan fetched, len(units))
	for i := range results {
		results[i] = make(chan fetched, 1)
	}
	sem := make(chan struct{}, max(inflight, 1))
	go func() { // fetch in order, at most inflight ahead of the decoder
		for i, u := range units {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func(i int, u Unit) {
				s, e, err := rowGroupRange(readers[u.File].ParquetReader(), u.RowGroup)
				var b []byte
				if err == nil {
					b, err = getRange(ctx, client, bucket, keys[u.File], s, e)
				}
				results[i] <- fetched{off: s, b: b, err: err}
			}(i, u)
		}
	}()
	for i, u := range units {
		if c.expired() {
			break
		}
		f := <-results[i]
		<-sem
		if f.err != nil {
			return c.done(), f.err
		}
		o := objs[u.File]
		o.rgOff, o.rg = f.off, f.b
		err := c.rowGroup(readers[u.File], u.RowGroup)
		o.rg = nil
		if err != nil {
			return c.done(), fmt.Errorf("%s row group %d: %w", keys[u.File], u.RowGroup, err)
		}
	}
	return c.done(), nil
}

// consumeMain is `peers consume`: one consumer run, JSON on stdout.
func consumeMain(mode, target string, batch, inflight int, shuffled bool, seed, epoch uint64, endpoint string, maxTime time.Duration) error {
	var r Consumed
	var err error
	switch mode {
	case "ipc":
		r, err = consumeIPC(target, maxTime)
	case "parquet":
		r, err = consumeParquet(target, batch, shuffled, seed, epoch, maxTime)
	case "sdk":
		bucket, prefix, _ := strings.Cut(target, "/")
		r, err = consumeSDK(endpoint, bucket, prefix, batch, inflight, shuffled, seed, epoch, maxTime)
	default:
		return fmt.Errorf("unknown consumer mode %q", mode)
	}
	if err != nil {
		return err
	}
	return writeConsumed(os.Stdout, r)
}
