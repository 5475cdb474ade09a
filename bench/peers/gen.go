package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Dataset is one generated dataset: Files Parquet files of RowsPerFile
// rows each, row groups of RowGroup rows, read in batches of Batch rows.
type Dataset struct {
	Name        string // "table" or "blobs"; also the S3 prefix and zenithfs dataset name
	Files       int
	RowsPerFile int64
	RowGroup    int64
	Batch       int
}

// Rows is the dataset's row count.
func (d Dataset) Rows() int64 { return int64(d.Files) * d.RowsPerFile }

// Dir is where the dataset's files live under root; the name encodes every
// parameter, so a cached copy is reused only when it matches.
func (d Dataset) Dir(root string) string {
	return filepath.Join(root, fmt.Sprintf("%s-%dx%d-rg%d", d.Name, d.Files, d.RowsPerFile, d.RowGroup))
}

// FileName is the name of file i (lexicographic = row order).
func (d Dataset) FileName(i int) string { return fmt.Sprintf("part-%04d.parquet", i) }

// Schema is the Arrow schema of the dataset.
func (d Dataset) Schema() *arrow.Schema { return benchkit.Schema(d.Name == "blobs") }

// record builds global rows [start, start+n); the same rows always get the
// same values (the generator is seeded by the first row).
func (d Dataset) record(start, n int64) arrow.RecordBatch {
	return benchkit.Record(d.Name == "blobs", start, n)
}

// Generate writes the dataset's files under root (skipping files already
// there) and returns the dataset's directory and its total bytes.
func Generate(root string, d Dataset) (string, int64, error) {
	if d.Files <= 0 || d.RowsPerFile <= 0 || d.RowGroup <= 0 || d.Batch <= 0 {
		return "", 0, errors.New("generate: files, rows, row group and batch must be positive")
	}
	dir := d.Dir(root)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, fmt.Errorf("generate: %w", err)
	}
	var total int64
	for i := 0; i < d.Files; i++ {
		path := filepath.Join(dir, d.FileName(i))
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			total += fi.Size()
			continue
		}
		if err := d.writeFile(path, int64(i)*d.RowsPerFile); err != nil {
			return "", 0, err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return "", 0, fmt.Errorf("generate: %w", err)
		}
		total += fi.Size()
	}
	return dir, total, nil
}

// writeFile writes one Parquet file holding rows [first, first+RowsPerFile),
// one whole row group at a time.
func (d Dataset) writeFile(path string, first int64) error {
	return benchkit.WriteParquet(path, d.Name == "blobs", first, d.RowsPerFile, d.RowGroup, d.RowGroup)
}
