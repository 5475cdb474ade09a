package format

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
)

// Inferred is what schema inference observed over one text file (CSV or
// JSON Lines), kept in its index so that the files of a dataset can be
// given one schema: the one inference over all of them, read one after the
// other, would give (UnifyText). A CSV shard whose column happens to hold
// only integers and another whose column holds decimals are then both read
// as float64, and a column empty in one shard takes the other shards'
// type, instead of the dataset failing with a schema mismatch.
type Inferred struct {
	CSV  []CSVColumn `json:"csv,omitempty"`
	JSON *JSONType   `json:"json,omitempty"`
}

// CSVColumn is what one CSV column's values allowed (see csvColumn).
type CSVColumn struct {
	Name     string `json:"name"`
	Seen     bool   `json:"seen,omitempty"` // a non-empty value occurred
	CanInt   bool   `json:"int,omitempty"`
	CanFloat bool   `json:"float,omitempty"`
	CanBool  bool   `json:"bool,omitempty"`
}

// JSONType is an inferred JSON Lines type (see jsonType), in a form that
// keeps the fields' first-seen order.
type JSONType struct {
	Kind   int         `json:"k"`
	Elem   *JSONType   `json:"e,omitempty"`
	Fields []JSONField `json:"f,omitempty"`
}

// JSONField is one field of an inferred JSON object type.
type JSONField struct {
	Name string    `json:"n"`
	Type *JSONType `json:"t"`
}

func csvInferred(cols []*csvColumn) *Inferred {
	in := &Inferred{CSV: make([]CSVColumn, len(cols))}
	for i, c := range cols {
		in.CSV[i] = CSVColumn{Name: c.name, Seen: c.seen, CanInt: c.canInt, CanFloat: c.canFloat, CanBool: c.canBool}
	}
	return in
}

func (t *jsonType) export() *JSONType {
	if t == nil {
		return nil
	}
	out := &JSONType{Kind: int(t.kind), Elem: t.elem.export()}
	for _, name := range t.order {
		out.Fields = append(out.Fields, JSONField{Name: name, Type: t.fields[name].export()})
	}
	return out
}

func (j *JSONType) internal() *jsonType {
	if j == nil {
		return nil
	}
	t := &jsonType{kind: jsonKind(j.Kind), elem: j.Elem.internal()}
	if len(j.Fields) > 0 {
		t.fields = map[string]*jsonType{}
		for _, f := range j.Fields {
			t.fields[f.Name] = f.Type.internal()
			t.order = append(t.order, f.Name)
		}
	}
	return t
}

// mergeType merges the type o, inferred elsewhere, into t by the rules
// merge applies to values: null takes the other's kind, integers and
// numbers make numbers, objects take the union of their fields (a field
// missing from one file's lines is null there, as one missing from a line
// is), arrays merge their elements; other mixes are an error naming the
// path.
func (t *jsonType) mergeType(o *jsonType, path string) error {
	if o == nil || o.kind == jNull {
		return nil
	}
	switch {
	case t.kind == jNull:
		t.kind = o.kind
	case t.kind == o.kind:
	case (t.kind == jInt && o.kind == jFloat) || (t.kind == jFloat && o.kind == jInt):
		t.kind = jFloat
	default:
		return fmt.Errorf("field %s holds %s values in one file and %s in another", path, kindNames[t.kind], kindNames[o.kind])
	}
	switch t.kind {
	case jList:
		if o.elem != nil {
			if t.elem == nil {
				t.elem = &jsonType{}
			}
			if err := t.elem.mergeType(o.elem, path+"[]"); err != nil {
				return err
			}
		}
	case jObject:
		if t.fields == nil {
			t.fields = map[string]*jsonType{}
		}
		for _, name := range o.order {
			ft, ok := t.fields[name]
			if !ok {
				ft = &jsonType{}
				t.fields[name] = ft
				t.order = append(t.order, name)
			}
			if err := ft.mergeType(o.fields[name], path+"."+name); err != nil {
				return err
			}
		}
	}
	return nil
}

// UnifyText returns the schema inference would give the text files of a
// dataset read as one (names name them, for errors), or nil when they are
// not all CSV, or not all JSON Lines, with what their inference observed
// (the caller then requires equal schemas). Files of no rows take no part:
// they get the others' schema.
func UnifyText(all []*File, allNames []string) (*arrow.Schema, error) {
	// Files of no rows observed nothing, and give no batch: their header
	// (or lack of fields) does not count.
	var files []*File
	var names []string
	for i, f := range all {
		if f.Rows > 0 {
			files, names = append(files, f), append(names, allNames[i])
		}
	}
	if len(files) == 0 || files[0].Inferred == nil {
		return nil, nil
	}
	kind := files[0].Kind
	for _, f := range files {
		if f.Kind != kind || f.Inferred == nil || (kind != CSV && kind != JSONL) {
			return nil, nil
		}
	}
	if kind == JSONL {
		root := &jsonType{kind: jObject}
		for i, f := range files {
			if err := root.mergeType(f.Inferred.JSON.internal(), "$"); err != nil {
				return nil, fmt.Errorf("%s (after %s): %w", names[i], names[0], err)
			}
		}
		return arrow.NewSchema(root.structFields(), nil), nil
	}
	cols := make([]*csvColumn, len(files[0].Inferred.CSV))
	for i, c := range files[0].Inferred.CSV {
		cols[i] = &csvColumn{name: c.Name, canInt: true, canFloat: true, canBool: true}
	}
	for i, f := range files {
		in := f.Inferred.CSV
		if len(in) != len(cols) {
			return nil, fmt.Errorf("%s has %d columns, %s %d", names[i], len(in), names[0], len(cols))
		}
		for j, c := range in {
			if c.Name != cols[j].name {
				return nil, fmt.Errorf("column %d is %q in %s and %q in %s", j, c.Name, names[i], cols[j].name, names[0])
			}
			col := cols[j]
			col.seen = col.seen || c.Seen
			col.canInt = col.canInt && c.CanInt
			col.canFloat = col.canFloat && c.CanFloat
			col.canBool = col.canBool && c.CanBool
		}
	}
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{Name: c.name, Type: c.typ(), Nullable: true}
	}
	return arrow.NewSchema(fields, nil), nil
}
