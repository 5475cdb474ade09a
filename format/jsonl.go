package format

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// JSON Lines files hold one JSON object per line (blank lines are skipped).
// The schema is inferred over every line: numbers are int64 when every
// value is integral and float64 otherwise, objects become structs (fields in
// first-seen order), arrays become lists, and a key missing from a line is
// null. Values of conflicting kinds in one field are an error naming the
// field and the line.

type jsonKind int

const (
	jNull jsonKind = iota
	jBool
	jInt
	jFloat
	jString
	jList
	jObject
)

var kindNames = map[jsonKind]string{jNull: "null", jBool: "bool", jInt: "integer", jFloat: "number", jString: "string", jList: "array", jObject: "object"}

type jsonType struct {
	kind   jsonKind
	elem   *jsonType            // jList
	fields map[string]*jsonType // jObject
	order  []string             // jObject, first-seen order
}

func (t *jsonType) merge(v any, path string) error {
	var k jsonKind
	switch v.(type) {
	case nil:
		return nil
	case bool:
		k = jBool
	case json.Number:
		k = jInt
		if _, err := v.(json.Number).Int64(); err != nil {
			k = jFloat
		}
	case string:
		k = jString
	case []any:
		k = jList
	case map[string]any:
		k = jObject
	}
	switch {
	case t.kind == jNull:
		t.kind = k
	case t.kind == k:
	case (t.kind == jInt && k == jFloat) || (t.kind == jFloat && k == jInt):
		t.kind = jFloat
	default:
		return fmt.Errorf("field %s holds both %s and %s values", path, kindNames[t.kind], kindNames[k])
	}
	switch x := v.(type) {
	case []any:
		if t.elem == nil {
			t.elem = &jsonType{}
		}
		for _, e := range x {
			if err := t.elem.merge(e, path+"[]"); err != nil {
				return err
			}
		}
	case map[string]any:
		if t.fields == nil {
			t.fields = map[string]*jsonType{}
		}
		// map iteration order is random; first-seen order needs the
		// keys in document order, which decodeOrdered provides.
		for _, name := range orderedKeys(x) {
			ft, ok := t.fields[name]
			if !ok {
				ft = &jsonType{}
				t.fields[name] = ft
				t.order = append(t.order, name)
			}
			if err := ft.merge(x[name], path+"."+name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *jsonType) arrow() arrow.DataType {
	switch t.kind {
	case jBool:
		return arrow.FixedWidthTypes.Boolean
	case jInt:
		return arrow.PrimitiveTypes.Int64
	case jFloat:
		return arrow.PrimitiveTypes.Float64
	case jList:
		elem := &jsonType{}
		if t.elem != nil {
			elem = t.elem
		}
		return arrow.ListOf(elem.arrow())
	case jObject:
		return arrow.StructOf(t.structFields()...)
	}
	return arrow.BinaryTypes.String
}

func (t *jsonType) structFields() []arrow.Field {
	fields := make([]arrow.Field, len(t.order))
	for i, name := range t.order {
		fields[i] = arrow.Field{Name: name, Type: t.fields[name].arrow(), Nullable: true}
	}
	return fields
}

// keyOrder carries document key order for objects decoded by decodeLine.
const keyOrder = "\x00order"

func orderedKeys(m map[string]any) []string {
	if ks, ok := m[keyOrder].([]string); ok {
		return ks
	}
	return nil
}

// decodeLine parses one JSON value, recording each object's key order
// under keyOrder.
func decodeLine(line []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	v, err := decodeValue(d)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func decodeValue(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		var order []string
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			if _, dup := m[k]; !dup {
				order = append(order, k)
			}
			m[k] = v
		}
		if _, err := d.Token(); err != nil {
			return nil, err
		}
		m[keyOrder] = order
		return m, nil
	case json.Delim('['):
		var l []any
		for d.More() {
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		if _, err := d.Token(); err != nil {
			return nil, err
		}
		if l == nil {
			l = []any{}
		}
		return l, nil
	}
	return tok, nil
}

func indexJSONL(ctx context.Context, obj Object, opts Options) (*File, error) {
	br := bufio.NewReaderSize(section(obj), 1<<20)
	root := &jsonType{}
	f := &File{}
	segRows := int64(opts.segmentRows())
	var off int64
	cur := Segment{}
	for line := 1; ; line++ {
		if line%65536 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			if t := bytes.TrimSpace(b); len(t) > 0 {
				if opts.Schema == nil {
					v, derr := decodeLine(t)
					if derr != nil {
						return nil, fmt.Errorf("%w: line %d: %v", ErrCorrupt, line, derr)
					}
					if _, ok := v.(map[string]any); !ok {
						return nil, fmt.Errorf("%w: line %d: not a JSON object", ErrCorrupt, line)
					}
					if merr := root.merge(v, "$"); merr != nil {
						return nil, fmt.Errorf("line %d: %w", line, merr)
					}
				}
				if cur.Rows == 0 {
					cur.Off = off
				}
				cur.Rows++
			}
			off += int64(len(b))
			if cur.Rows == segRows {
				cur.Len = off - cur.Off
				f.Segments = append(f.Segments, cur)
				f.Rows += cur.Rows
				cur = Segment{}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read line %d: %w", line, err)
		}
	}
	if cur.Rows > 0 {
		cur.Len = off - cur.Off
		f.Segments = append(f.Segments, cur)
		f.Rows += cur.Rows
	}
	schema := opts.Schema
	if schema == nil {
		schema = arrow.NewSchema(root.structFields(), nil)
		f.Inferred = &Inferred{JSON: root.export()}
	}
	f.SchemaIPC = EncodeSchema(schema)
	return f, nil
}

func readJSONL(obj Object, f *File, i int, schema *arrow.Schema) (arrow.RecordBatch, error) {
	return readText(obj, f.Segments[i], "json", func(r io.Reader) recordReader {
		return array.NewJSONReader(r, schema, array.WithChunk(-1), array.WithAllocator(memory.DefaultAllocator))
	})
}
