package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
)

// Errors the S3 store wraps, so that callers (mount start-up, the fs layer)
// can tell the common failures apart with errors.Is.
var (
	// ErrBucketNotFound: the bucket does not exist.
	ErrBucketNotFound = errors.New("bucket does not exist")
	// ErrAccessDenied: the credentials are wrong or lack permission.
	ErrAccessDenied = errors.New("access denied")
	// ErrNoCredentials: the AWS credential chain found no credentials.
	ErrNoCredentials = errors.New("no AWS credentials")
	// ErrUnreachable: the endpoint did not answer (refused, reset, timed out).
	ErrUnreachable = errors.New("endpoint unreachable")
	// ErrObjectChanged: the object's ETag changed under a read (a read
	// under WithExpectedETag, or parts of one read that saw two versions).
	ErrObjectChanged = errors.New("object changed during read")
)

// S3 defaults.
const (
	DefaultS3PartSize    = 8 << 20
	DefaultS3Concurrency = 16
	DefaultS3Retries     = 4
	DefaultS3Timeout     = 20 * time.Second
	DefaultS3Backoff     = 100 * time.Millisecond
	defaultS3Region      = "us-east-1"
	maxS3Backoff         = 5 * time.Second
)

// S3Options configures an S3 store. Only Bucket is required.
type S3Options struct {
	// Bucket is the bucket name.
	Bucket string
	// Prefix is the key prefix the store is rooted at. It is a directory:
	// "data" and "data/" both mean keys below "data/".
	Prefix string
	// Endpoint is the URL of an S3-compatible server (versitygw, MinIO…),
	// addressed path-style. Empty: AWS_ENDPOINT_URL_S3, then
	// AWS_ENDPOINT_URL, then AWS itself (virtual-hosted style).
	Endpoint string
	// Region overrides the region of the AWS chain; "us-east-1" when
	// neither names one.
	Region string
	// Credentials overrides the AWS credential chain (env, shared
	// config/profiles, IMDS) when non-nil.
	Credentials aws.CredentialsProvider
	// PartSize is the most bytes one GET fetches: larger reads are split
	// into parts fetched in parallel. Default 8 MiB.
	PartSize int64
	// MergeGap: ranges of one ReadRanges call separated by at most this
	// many bytes are fetched by one GET (the gap is read and discarded).
	// Adjacent ranges are always merged. Default 0.
	MergeGap int64
	// Concurrency bounds the GETs in flight across the whole store.
	// Default 16.
	Concurrency int
	// Retries is how many times a transient failure (5xx, SlowDown,
	// connection refused or reset, attempt timeout) is retried. Default 4;
	// negative means none.
	Retries int
	// Timeout bounds each attempt (request and body). Default 20s.
	Timeout time.Duration
	// Backoff is the first retry delay; each retry doubles it (capped at
	// 5s) with jitter. Default 100ms.
	Backoff time.Duration
	// SkipCheck skips the start-up Check in NewS3.
	SkipCheck bool
	// Logger receives retries (debug) and failed reads (warn).
	Logger *slog.Logger
}

// S3Stats are the store's counters since it was created.
type S3Stats struct {
	GETs         int64  // GET requests sent, retries included
	HEADs        int64  // HEAD requests sent
	LISTs        int64  // list requests sent
	BytesFetched int64  // body bytes received by GETs
	Retries      int64  // attempts repeated after a transient failure
	Errors       int64  // operations (one part's GET, a HEAD, a list page) failed for good; missing keys excluded
	LastError    string // the latest of those errors, for .zenith/stats
}

// S3 is a Store over the objects below a prefix of an S3 bucket. Reads are
// ranged GETs; ReadRanges (and ReadAt of a large buffer) splits ranges into
// PartSize parts fetched in parallel, at most Concurrency at once. Every
// request attempt is bounded by Timeout and transient failures are retried
// with jittered exponential backoff, so a dead endpoint fails a read within
// about (Retries+1) × Timeout and never hangs it.
type S3 struct {
	client   *s3.Client
	creds    aws.CredentialsProvider
	bucket   string
	prefix   string
	endpoint string // for messages
	partSize int64
	mergeGap int64
	sem      chan struct{}
	retries  int
	timeout  time.Duration
	backoff  time.Duration
	log      *slog.Logger

	gets, heads, lists, bytes, retried, errs atomic.Int64
	lastErr                                  atomic.Pointer[string]
}

var _ RangeReader = (*S3)(nil)

// NewS3 returns an S3 store. Credentials and region come from the standard
// AWS chain unless opts names them. Unless opts.SkipCheck, it verifies the
// credentials and the bucket (see Check), so a mount fails at start with
// one clear error.
func NewS3(ctx context.Context, opts S3Options) (*S3, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	s := &S3{
		bucket:   opts.Bucket,
		prefix:   opts.Prefix,
		partSize: opts.PartSize,
		mergeGap: max(opts.MergeGap, 0),
		retries:  opts.Retries,
		timeout:  opts.Timeout,
		backoff:  opts.Backoff,
		log:      opts.Logger,
	}
	if s.prefix != "" && !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	if s.partSize <= 0 {
		s.partSize = DefaultS3PartSize
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = DefaultS3Concurrency
	}
	s.sem = make(chan struct{}, conc)
	switch {
	case s.retries == 0:
		s.retries = DefaultS3Retries
	case s.retries < 0:
		s.retries = 0
	}
	if s.timeout <= 0 {
		s.timeout = DefaultS3Timeout
	}
	if s.backoff <= 0 {
		s.backoff = DefaultS3Backoff
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}

	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	s.endpoint = endpoint

	// The SDK's buildable client keeps the CA bundle handling of the chain
	// (AWS_CA_BUNDLE); only the pool size is raised to match Concurrency.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = max(conc, awshttp.DefaultHTTPTransportMaxIdleConnsPerHost)
		t.MaxIdleConns = max(2*conc, awshttp.DefaultHTTPTransportMaxIdleConns)
	})
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		// Retries are ours (retryS3), so that a failure while streaming a
		// body is retried like one before the response, and counted.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			s.log.Debug("aws sdk: "+fmt.Sprintf(format, v...), "class", string(c))
		})),
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = defaultS3Region
	}
	s.creds = cfg.Credentials
	s.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		// S3-compatible servers differ in their support of the newer
		// default checksums; a ranged GET has none to validate anyway.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if !opts.SkipCheck {
		if err := s.Check(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// String names the store, e.g. "s3://bucket/prefix/".
func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *S3) objectKey(key string) string { return s.prefix + key }

func (s *S3) where() string {
	if s.endpoint == "" {
		return "AWS S3"
	}
	return s.endpoint
}

// Check verifies that credentials are found, the endpoint answers, and the
// bucket exists and may be listed. Its error is one line meant for a user:
// it wraps ErrNoCredentials, ErrUnreachable, ErrBucketNotFound or
// ErrAccessDenied where one of them is the cause.
func (s *S3) Check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	_, err := s.creds.Retrieve(cctx)
	cancel()
	if err != nil {
		return userError(ErrNoCredentials, err,
			"s3://%s: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (%v)", s.bucket, err)
	}
	err = s.retry(ctx, func(actx context.Context) error {
		s.lists.Add(1)
		_, err := s.client.ListObjectsV2(actx, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix), MaxKeys: aws.Int32(1),
		})
		return err
	})
	if err == nil {
		return nil
	}
	status, code := responseStatus(err)
	switch {
	case status == http.StatusForbidden || isAuthCode(code):
		return userError(ErrAccessDenied, err, "s3: access denied to bucket %q at %s (%s): check AWS credentials",
			s.bucket, s.where(), code)
	case code == "NoSuchBucket" || status == http.StatusNotFound:
		return userError(ErrBucketNotFound, err, "s3: bucket %q does not exist at %s", s.bucket, s.where())
	case status == http.StatusMovedPermanently || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed":
		return fmt.Errorf("s3: bucket %q is in another region (%s): set AWS_REGION: %w", s.bucket, code, err)
	case status == 0 && ctx.Err() == nil:
		cause := err.Error()
		var op *net.OpError
		if errors.As(err, &op) {
			cause = op.Error()
		}
		return userError(ErrUnreachable, err, "s3: cannot reach endpoint %s: %s", s.where(), cause)
	}
	return fmt.Errorf("s3: check bucket %q at %s: %w", s.bucket, s.where(), err)
}

// userErr is a one-line message for a user that still unwraps to a
// sentinel and the underlying cause.
type userErr struct {
	msg  string
	errs [2]error
}

func (e *userErr) Error() string   { return e.msg }
func (e *userErr) Unwrap() []error { return e.errs[:] }

func userError(sentinel, cause error, format string, args ...any) error {
	return &userErr{msg: fmt.Sprintf(format, args...), errs: [2]error{sentinel, cause}}
}

// Stat implements Store with a HEAD request. Info.ETag has no quotes.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	var out *s3.HeadObjectOutput
	err := s.retry(ctx, func(actx context.Context) error {
		s.heads.Add(1)
		var err error
		out, err = s.client.HeadObject(actx, &s3.HeadObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(s.objectKey(key)),
		})
		return err
	})
	if err != nil {
		return Info{}, s.fail(fmt.Errorf("s3 stat %s: %w", s.url(key), classify(err)))
	}
	info := Info{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag))}
	if out.LastModified != nil {
		info.ModTime = *out.LastModified
	}
	return info, nil
}

// List implements Store: every object below the store prefix + prefix, with
// keys relative to the store prefix. Folder markers (keys ending in "/") are
// not objects and are left out.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	var (
		out   []Info
		token *string
	)
	for {
		var page *s3.ListObjectsV2Output
		err := s.retry(ctx, func(actx context.Context) error {
			s.lists.Add(1)
			var err error
			page, err = s.client.ListObjectsV2(actx, &s3.ListObjectsV2Input{
				Bucket: aws.String(s.bucket), Prefix: aws.String(s.objectKey(prefix)), ContinuationToken: token,
			})
			return err
		})
		if err != nil {
			return nil, s.fail(fmt.Errorf("s3 list %s: %w", s.url(prefix), classify(err)))
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if k == "" || strings.HasSuffix(k, "/") {
				continue
			}
			info := Info{Key: k, Size: aws.ToInt64(o.Size), ETag: unquote(aws.ToString(o.ETag))}
			if o.LastModified != nil {
				info.ModTime = *o.LastModified
			}
			out = append(out, info)
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			break
		}
		token = page.NextContinuationToken
	}
	// S3 lists in UTF-8 byte order already; sorting guards servers that don't.
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// ReadAt implements Store: a ranged GET (several in parallel when p is
// larger than PartSize). At the end of the object it returns io.EOF.
func (s *S3) ReadAt(ctx context.Context, key string, p []byte, off int64) (int, error) {
	rs := []Range{{Off: off, Buf: p}}
	err := s.ReadRanges(ctx, key, rs)
	if err != nil && rs[0].Err != nil {
		return rs[0].N, rs[0].Err
	}
	return rs[0].N, err
}

// Stats returns the store's counters.
func (s *S3) Stats() S3Stats {
	st := S3Stats{
		GETs: s.gets.Load(), HEADs: s.heads.Load(), LISTs: s.lists.Load(),
		BytesFetched: s.bytes.Load(), Retries: s.retried.Load(), Errors: s.errs.Load(),
	}
	if p := s.lastErr.Load(); p != nil {
		st.LastError = *p
	}
	return st
}

func (s *S3) url(key string) string { return "s3://" + s.bucket + "/" + s.objectKey(key) }

// fail counts and logs an operation that failed for good; a missing key is
// an answer, not a failure.
func (s *S3) fail(err error) error {
	if !errors.Is(err, ErrNotExist) {
		s.errs.Add(1)
		msg := err.Error()
		s.lastErr.Store(&msg)
		s.log.Warn("s3 request failed", "err", err)
	}
	return err
}

type expectedETagKey struct{}

// WithExpectedETag returns a context under which S3 reads succeed only while
// the object's ETag (as in Info.ETag) is still etag; otherwise they fail with
// ErrObjectChanged, so a caller that indexed an object never mixes bytes of
// two versions. Stores without ETags ignore it.
func WithExpectedETag(ctx context.Context, etag string) context.Context {
	return context.WithValue(ctx, expectedETagKey{}, etag)
}

func expectedETag(ctx context.Context) string {
	v, _ := ctx.Value(expectedETagKey{}).(string)
	return v
}

func unquote(etag string) string { return strings.Trim(etag, `"`) }
