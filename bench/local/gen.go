package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Kind names a generated dataset shape.
type Kind string

const (
	// KindTable is a tabular dataset of ten scalar columns (~70 bytes a row).
	KindTable Kind = "table"
	// KindBlobs is a dataset whose rows carry one 64 KiB binary blob each
	// (image-like samples): the read path is dominated by bytes, not decoding.
	KindBlobs Kind = "blobs"
)

// BlobBytes is the size of each blob of KindBlobs.
const BlobBytes = benchkit.BlobBytes

// GenSpec describes one generated Parquet file.
type GenSpec struct {
	Kind     Kind
	Rows     int64
	RowGroup int64 // rows per Parquet row group
}

// FileName is a name that encodes the spec, so a cached file is reused only
// when it was generated with the same parameters.
func (g GenSpec) FileName() string {
	return fmt.Sprintf("%s-%d-rg%d.parquet", g.Kind, g.Rows, g.RowGroup)
}

// Schema is the Arrow schema of the generated data.
func (g GenSpec) Schema() *arrow.Schema { return benchkit.Schema(g.Kind == KindBlobs) }

// Generate writes the dataset to dir (if a file of the same spec is not
// there already) and returns its path.
func Generate(dir string, g GenSpec) (string, error) {
	if g.Rows <= 0 || g.RowGroup <= 0 {
		return "", errors.New("generate: rows and row group must be positive")
	}
	path := filepath.Join(dir, g.FileName())
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("generate: %w", err)
	}
	chunk := min(g.RowGroup, 1<<16)
	if g.Kind == KindBlobs {
		chunk = min(g.RowGroup, 64)
	}
	if err := benchkit.WriteParquet(path, g.Kind == KindBlobs, 0, g.Rows, g.RowGroup, chunk); err != nil {
		return "", err
	}
	return path, nil
}
