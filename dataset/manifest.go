package dataset

import (
	"encoding/json"
	"time"
)

// Manifest is the content of <dataset>/_manifest.json.
type Manifest struct {
	Name       string           `json:"name"`
	ID         string           `json:"id"`
	Generation uint64           `json:"generation"`
	Rows       int64            `json:"rows"`
	Batches    int              `json:"batches"`
	BatchSize  int64            `json:"batch_size"`
	Bytes      int64            `json:"bytes"`
	Schema     string           `json:"schema"`
	Sources    []ManifestSource `json:"sources"`
}

// ManifestSource is one source file and its identity.
type ManifestSource struct {
	Key      string    `json:"key"`
	Format   string    `json:"format"`
	Size     int64     `json:"size"`
	ModTime  time.Time `json:"mtime"`
	ETag     string    `json:"etag,omitempty"`
	Identity string    `json:"identity"`
	Rows     int64     `json:"rows"`
	FirstRow int64     `json:"first_row"`
}

// Manifest describes the snapshot.
func (s *Snapshot) Manifest() Manifest {
	m := Manifest{Name: s.ds.Name, ID: s.ID, Generation: s.Gen, Rows: s.Rows, Batches: s.NumBatches(), BatchSize: s.BatchSize, Schema: s.schema.String()}
	for _, sz := range s.sizes {
		m.Bytes += sz
	}
	for _, f := range s.Files {
		m.Sources = append(m.Sources, ManifestSource{Key: f.Info.Key, Format: string(f.Index.Kind), Size: f.Info.Size, ModTime: f.Info.ModTime.UTC(),
			ETag: f.Info.ETag, Identity: f.Info.Identity(), Rows: f.Index.Rows, FirstRow: f.FirstRow})
	}
	return m
}

// ManifestJSON is the manifest, indented, with a trailing newline.
func (s *Snapshot) ManifestJSON() []byte {
	b, _ := json.MarshalIndent(s.Manifest(), "", "  ") // plain structs: cannot fail
	return append(b, '\n')
}
