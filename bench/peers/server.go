package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// creds are the benchmark's server credentials, handed to every arm
// through the standard AWS environment variables (s3fs: a passwd file).
var creds = benchkit.Creds{Access: "zenithpeers", Secret: "zenithpeerssecret", Region: "us-east-1"}

// upload creates the bucket (if needed) and puts every file of dir under
// prefix/, skipping objects that already have the same size.
func upload(ctx context.Context, c *s3.Client, bucket, prefix, dir string) error {
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil &&
		!strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") && !strings.Contains(err.Error(), "BucketAlreadyExists") {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".parquet") {
			continue
		}
		key := prefix + "/" + e.Name()
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err == nil &&
			aws.ToInt64(h.ContentLength) == fi.Size() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: f, ContentLength: aws.Int64(fi.Size())})
		f.Close()
		if err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
	}
	return nil
}
