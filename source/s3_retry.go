package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// retry runs fn until it succeeds, fails for good, or the retries are
// spent. Each attempt gets its own context bounded by the store's Timeout,
// which covers reading the response body too: a server that stops
// answering mid-body fails the attempt rather than hanging it.
func (s *S3) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.timeout)
		err := fn(actx)
		timedOut := err != nil && actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if timedOut {
			err = fmt.Errorf("no answer within %s: %w", s.timeout, err)
		}
		if attempt >= s.retries || !(timedOut || transient(ctx, err)) {
			if attempt > 0 {
				err = fmt.Errorf("after %d attempts: %w", attempt+1, err)
			}
			return err
		}
		s.retried.Add(1)
		d := s.backoff << attempt
		if d <= 0 || d > maxS3Backoff {
			d = maxS3Backoff
		}
		d = d/2 + rand.N(d/2+1) // jitter in [d/2, d]
		s.log.Debug("s3 retry", "attempt", attempt+1, "delay", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while retrying: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

var sdkRetryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// transient reports whether err is worth another attempt: 5xx, 429,
// throttling and timeout codes, and connection failures (refused, reset,
// a body cut short). Client errors (4xx) and the caller's own cancellation
// are not.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED):
		return true
	}
	status, code := responseStatus(err)
	var de *smithy.DeserializationError
	if status >= 200 && status < 300 && errors.As(err, &de) {
		return true // a success whose body was cut short
	}
	if status != 0 {
		switch {
		case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
			return true
		case code == "SlowDown" || code == "RequestTimeout":
			return true
		}
		return sdkRetryables.IsErrorRetryable(err) == aws.TrueTernary
	}
	return sdkRetryables.IsErrorRetryable(err) == aws.TrueTernary
}

// responseStatus returns the HTTP status and S3 error code of err, or 0 and
// "" when no response was received.
func responseStatus(err error) (status int, code string) {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return status, code
}

func isAuthCode(code string) bool {
	switch code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
		"AccountProblem", "InvalidSecurity",
		"XAdminUserNotFound": // versitygw's answer (404) to an unknown access key
		return true
	}
	return false
}

// classify wraps the store's sentinel errors around an SDK error.
func classify(err error) error {
	status, code := responseStatus(err)
	switch {
	case isAuthCode(code):
		return fmt.Errorf("%w: %w", ErrAccessDenied, err)
	case code == "NoSuchBucket":
		return fmt.Errorf("%w: %w", ErrBucketNotFound, err)
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotExist, err)
	case status == http.StatusPreconditionFailed:
		return fmt.Errorf("%w: %w", ErrObjectChanged, err)
	case status == http.StatusForbidden || isAuthCode(code):
		return fmt.Errorf("%w: %w", ErrAccessDenied, err)
	case status == 0 && !errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}
