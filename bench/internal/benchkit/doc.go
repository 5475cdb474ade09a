// Package benchkit holds the helpers the benchmark programs under bench/
// (local, peers, s3, views) share: deterministic Parquet generation, a
// versitygw S3 server for a benchmark run, /proc readers for a daemon's
// CPU time and memory, the zenithfs daemon lookup and umount wrapper,
// medians, and gonum/plot output.
package benchkit
