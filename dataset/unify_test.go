package dataset

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/zenithfs/zenithfs/source"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadDir(t *testing.T, dir string, batch int) (*Dataset, error) {
	t.Helper()
	d := New("u", Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir},
		Options{BatchSize: batch, StateDir: t.TempDir()})
	return d, d.Load(context.Background())
}

// allRows decodes every batch and returns column col's values as text.
func allRows(t *testing.T, d *Dataset, col string) []string {
	t.Helper()
	s, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range s.NumBatches() {
		rec, err := s.Record(context.Background(), k)
		if err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
		idx := rec.Schema().FieldIndices(col)
		if len(idx) != 1 {
			t.Fatalf("batch %d has no column %s: %s", k, col, rec.Schema())
		}
		a := rec.Column(idx[0])
		for i := range a.Len() {
			out = append(out, a.ValueStr(i))
		}
	}
	return out
}

func fieldType(t *testing.T, d *Dataset, col string) arrow.DataType {
	t.Helper()
	s, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	idx := s.Schema().FieldIndices(col)
	if len(idx) != 1 {
		t.Fatalf("no column %s in %s", col, s.Schema())
	}
	return s.Schema().Field(idx[0]).Type
}

// CSV shards get the schema inference over all of them gives: integers in
// one shard and decimals in another are float64, a column empty in one
// shard (or a shard with no rows) takes the others' type.
func TestCSVShardsShareOneInferredSchema(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.csv": "id,x,flag\n1,1,true\n2,2,false\n",
		"b.csv": "id,x,flag\n3,2.5,\n4,,\n",
		"c.csv": "id,x,flag\n",
		"e.csv": "id,renamed\n", // no rows: its header does not count
		"f.csv": "",             // an empty file: no header, no rows
		"d.csv": "id,x,flag\n5,7,1\n",
	})
	d, err := loadDir(t, dir, 2)
	if err != nil {
		t.Fatalf("CSV shards of compatible columns: %v", err)
	}
	if got := fieldType(t, d, "x"); !arrow.TypeEqual(got, arrow.PrimitiveTypes.Float64) {
		t.Errorf("x is %s, want float64", got)
	}
	if got := fieldType(t, d, "flag"); !arrow.TypeEqual(got, arrow.FixedWidthTypes.Boolean) {
		t.Errorf("flag is %s, want bool (every value parses as one)", got)
	}
	if got := fieldType(t, d, "id"); !arrow.TypeEqual(got, arrow.PrimitiveTypes.Int64) {
		t.Errorf("id is %s, want int64", got)
	}
	if got, want := strings.Join(allRows(t, d, "x"), " "), "1 2 2.5 (null) 7"; got != want {
		t.Errorf("x reads %q, want %q", got, want)
	}
	if got, want := strings.Join(allRows(t, d, "flag"), " "), "true false (null) (null) true"; got != want {
		t.Errorf("flag reads %q, want %q", got, want)
	}
}

// JSON Lines shards likewise: numbers widen, fields missing from a shard
// are null there, an empty shard adopts the rest.
func TestJSONLShardsShareOneInferredSchema(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.jsonl": `{"id":1,"v":1,"tags":[]}` + "\n",
		"b.jsonl": `{"id":2,"v":2.5,"extra":"s","tags":["x"]}` + "\n",
		"c.jsonl": "",
	})
	d, err := loadDir(t, dir, 1)
	if err != nil {
		t.Fatalf("JSONL shards of compatible fields: %v", err)
	}
	if got := fieldType(t, d, "v"); !arrow.TypeEqual(got, arrow.PrimitiveTypes.Float64) {
		t.Errorf("v is %s, want float64", got)
	}
	if got := fieldType(t, d, "tags"); !arrow.TypeEqual(got, arrow.ListOf(arrow.BinaryTypes.String)) {
		t.Errorf("tags is %s, want list<string>", got)
	}
	if got, want := strings.Join(allRows(t, d, "extra"), " "), "(null) s"; got != want {
		t.Errorf("extra reads %q, want %q", got, want)
	}
	if got, want := strings.Join(allRows(t, d, "v"), " "), "1 2.5"; got != want {
		t.Errorf("v reads %q, want %q", got, want)
	}
}

func TestIncompatibleTextShardsAreAMismatch(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"jsonl kinds": {"a.jsonl": `{"v":"s"}` + "\n", "b.jsonl": `{"v":1}` + "\n"},
		"csv headers": {"a.csv": "id,x\n1,2\n", "b.csv": "id,y\n1,2\n"},
	} {
		_, err := loadDir(t, writeFiles(t, files), 1)
		if !errors.Is(err, ErrSchemaMismatch) || !strings.Contains(err.Error(), "b.") {
			t.Errorf("%s: %v, want a schema mismatch naming the second file", name, err)
		}
	}
}

// A shard added while mounted can widen the other files' schema: their
// segments decoded before must not be served under the new one.
func TestAddedShardWidensDecodedSegments(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.csv": "id,x\n1,1\n2,2\n"})
	d, err := loadDir(t, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(allRows(t, d, "x"), " "); got != "1 2" {
		t.Fatalf("x reads %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.csv"), []byte("id,x\n3,2.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Recheck(context.Background()); err != nil {
		t.Fatalf("re-index with a widening shard: %v", err)
	}
	if got := fieldType(t, d, "x"); !arrow.TypeEqual(got, arrow.PrimitiveTypes.Float64) {
		t.Fatalf("x is %s after the new shard, want float64", got)
	}
	if got, want := strings.Join(allRows(t, d, "x"), " "), "1 2 2.5"; got != want {
		t.Fatalf("x reads %q after the new shard, want %q", got, want)
	}
}
