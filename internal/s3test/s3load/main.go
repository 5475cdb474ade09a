// Command s3load uploads a local file or directory tree into a bucket of an
// S3-compatible server (the test server of scripts/s3-server.sh), creating
// the bucket if needed. Credentials, region and endpoint come from the AWS
// chain (eval "$(scripts/s3-server.sh env)" sets them for the test server).
//
//	go run ./internal/s3test/s3load -bucket data -prefix ds/ ./sample
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func main() {
	bucket := flag.String("bucket", "", "bucket to upload into (created if missing)")
	prefix := flag.String("prefix", "", "key prefix, e.g. datasets/train/")
	endpoint := flag.String("endpoint", os.Getenv("AWS_ENDPOINT_URL_S3"), "S3 endpoint URL (path-style)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: s3load -bucket B [-prefix P] [-endpoint URL] SRC...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *bucket == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*endpoint, *bucket, *prefix, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "s3load:", err)
		os.Exit(1)
	}
}

func run(endpoint, bucket, prefix string, srcs []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	_, err = client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	var files, bytes int64
	for _, src := range srcs {
		root := filepath.Clean(src)
		fi, err := os.Stat(root)
		if err != nil {
			return err
		}
		base := root
		if !fi.IsDir() {
			base = filepath.Dir(root)
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, err := filepath.Rel(base, p)
			if err != nil {
				return err
			}
			key := prefix + filepath.ToSlash(rel)
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			_, err = client.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(st.Size()),
			})
			if err != nil {
				return fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
			}
			files++
			bytes += st.Size()
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Printf("uploaded %d files (%d bytes) to s3://%s/%s\n", files, bytes, bucket, strings.TrimSuffix(prefix, "/"))
	return nil
}
