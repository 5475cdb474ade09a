package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// creds are the benchmark's server credentials, handed to zenithfs and to
// the baseline through the standard AWS environment variables.
var creds = benchkit.Creds{Access: "zenithbench", Secret: "zenithbenchsecret", Region: "us-east-1"}

// newClient is an SDK client for the server as a user would make one:
// the default config chain, path-style addressing.
func newClient(ctx context.Context, endpoint string) (*s3.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		// As zenithfs does: versitygw and ranged GETs gain nothing from the
		// newer default checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// upload creates the bucket (if needed) and puts every file of dir under prefix.
func upload(ctx context.Context, c *s3.Client, bucket, prefix, dir string) (int64, error) {
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil &&
		!strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") && !strings.Contains(err.Error(), "BucketAlreadyExists") {
		return 0, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(prefix + e.Name()),
			Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))})
		if err != nil {
			return 0, fmt.Errorf("put %s: %w", e.Name(), err)
		}
		total += int64(len(b))
	}
	return total, nil
}
