package dataset

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
)

// ErrUnsupportedNPZ is wrapped when a column's type has no npz mapping.
var ErrUnsupportedNPZ = errors.New("type has no npz mapping")

// EncodeNPZ writes rec as a numpy .npz archive (a zip of .npy arrays,
// stored, not compressed) that numpy.load reads without pickles. The
// archive is deterministic: fixed timestamps, no extra fields, arrays in
// schema order. The mapping, per column c of n rows:
//
//   - integers, floats, bool: c, 1-D of n ('<i8', '<f4', '|b1', …)
//   - timestamp, date: c, datetime64 with the column's unit ('<M8[us]',
//     '<M8[D]' for date32); duration, time of day: timedelta64 ('<m8[ns]');
//     the time zone is dropped (values are UTC instants)
//   - decimal: c, float64 (nearest value)
//   - string: c, fixed-width unicode '<U{longest}' (UTF-32LE)
//   - binary: c.values ('|u1', the bytes back to back) and c.offsets
//     ('<i8', n+1, starting at 0); fixed-size binary: c, '|u1' of (n, width)
//   - fixed-size list of a flat type: c, 2-D of (n, size)
//   - list, large list, map: c.values (the elements, mapped recursively as
//     a column named c.values) and c.offsets ('<i8', n+1, starting at 0)
//   - struct: one entry per field, c.<field>, mapped recursively
//   - dictionary: decoded to its value type
//   - a nullable column (field Nullable in the schema) also has c.valid,
//     '|b1' of n, false where the value is null; every batch of a dataset
//     so has the same entries. Null values are NaN (floats), NaT
//     (datetime64, timedelta64), 0, false, or "" (strings).
func EncodeNPZ(ctx context.Context, rec arrow.RecordBatch) ([]byte, error) {
	e := &npzEncoder{ctx: ctx, seen: map[string]bool{}}
	for i, f := range rec.Schema().Fields() {
		if err := e.column(f.Name, rec.Column(i), f.Nullable); err != nil {
			return nil, fmt.Errorf("npz column %s: %w", f.Name, err)
		}
	}
	return e.archive()
}

type npyArray struct {
	name  string
	descr string
	shape []int
	data  []byte
}

type npzEncoder struct {
	ctx    context.Context
	arrays []npyArray
	seen   map[string]bool
}

func (e *npzEncoder) add(name, descr string, shape []int, data []byte) error {
	if e.seen[name] {
		return fmt.Errorf("two arrays named %q: %w", name, ErrUnsupportedNPZ)
	}
	e.seen[name] = true
	e.arrays = append(e.arrays, npyArray{name: name, descr: descr, shape: shape, data: data})
	return nil
}

// valid returns one byte per row, 1 where the value is present.
func valid(a arrow.Array) []byte {
	b := make([]byte, a.Len())
	if a.DataType().ID() == arrow.NULL {
		return b
	}
	for i := range b {
		if a.IsValid(i) {
			b[i] = 1
		}
	}
	return b
}

func (e *npzEncoder) column(name string, a arrow.Array, nullable bool) error {
	n := a.Len()
	if nullable || a.DataType().ID() == arrow.NULL {
		if err := e.add(name+".valid", "|b1", []int{n}, valid(a)); err != nil {
			return err
		}
	}
	descr, data, inner, err := e.flat(name, a)
	if err != nil {
		return err
	}
	if descr != "" {
		return e.add(name, descr, append([]int{n}, inner...), data)
	}
	return nil
}

// flat maps a column to one array (descr, data, inner shape), or adds
// the derived arrays itself and returns an empty descr.
func (e *npzEncoder) flat(name string, a arrow.Array) (string, []byte, []int, error) {
	n := a.Len()
	switch a := a.(type) {
	case *array.Null:
		return "", nil, nil, nil
	case *array.Boolean:
		b := make([]byte, n)
		for i := range b {
			if a.IsValid(i) && a.Value(i) {
				b[i] = 1
			}
		}
		return "|b1", b, nil, nil
	case *array.String:
		return e.strings(n, a.IsValid, a.Value)
	case *array.LargeString:
		return e.strings(n, a.IsValid, a.Value)
	case *array.StringView:
		return e.strings(n, a.IsValid, a.Value)
	case *array.Binary:
		return "", nil, nil, e.binary(name, n, a.IsValid, a.Value)
	case *array.LargeBinary:
		return "", nil, nil, e.binary(name, n, a.IsValid, a.Value)
	case *array.BinaryView:
		return "", nil, nil, e.binary(name, n, a.IsValid, a.Value)
	case *array.FixedSizeBinary:
		w := a.DataType().(*arrow.FixedSizeBinaryType).ByteWidth
		b := make([]byte, 0, n*w)
		for i := 0; i < n; i++ {
			if a.IsValid(i) {
				b = append(b, a.Value(i)...)
			} else {
				b = append(b, make([]byte, w)...)
			}
		}
		return "|u1", b, []int{w}, nil
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		return floats(n, a.IsValid, func(i int) float64 { return a.Value(i).ToFloat64(scale) })
	case *array.Decimal256:
		scale := a.DataType().(*arrow.Decimal256Type).Scale
		return floats(n, a.IsValid, func(i int) float64 { return a.Value(i).ToFloat64(scale) })
	case *array.Date32:
		return times(n, a.IsValid, "<M8[D]", func(i int) int64 { return int64(a.Value(i)) })
	case *array.Date64:
		return times(n, a.IsValid, "<M8[ms]", func(i int) int64 { return int64(a.Value(i)) })
	case *array.Timestamp:
		u := a.DataType().(*arrow.TimestampType).Unit
		return times(n, a.IsValid, "<M8["+u.String()+"]", func(i int) int64 { return int64(a.Value(i)) })
	case *array.Duration:
		u := a.DataType().(*arrow.DurationType).Unit
		return times(n, a.IsValid, "<m8["+u.String()+"]", func(i int) int64 { return int64(a.Value(i)) })
	case *array.Time32:
		u := a.DataType().(*arrow.Time32Type).Unit
		return times(n, a.IsValid, "<m8["+u.String()+"]", func(i int) int64 { return int64(a.Value(i)) })
	case *array.Time64:
		u := a.DataType().(*arrow.Time64Type).Unit
		return times(n, a.IsValid, "<m8["+u.String()+"]", func(i int) int64 { return int64(a.Value(i)) })
	case *array.FixedSizeList:
		size := int(a.DataType().(*arrow.FixedSizeListType).Len())
		child := array.NewSlice(a.ListValues(), int64(a.Offset()*size), int64((a.Offset()+n)*size))
		field := a.DataType().(*arrow.FixedSizeListType).ElemField()
		if field.Nullable {
			vd := valid(child)
			if err := e.add(name+".values.valid", "|b1", []int{n, size}, vd); err != nil {
				return "", nil, nil, err
			}
		}
		descr, data, inner, err := e.flat(name, child)
		if err != nil {
			return "", nil, nil, err
		}
		if descr == "" {
			return "", nil, nil, fmt.Errorf("fixed-size list of %s: %w", child.DataType(), ErrUnsupportedNPZ)
		}
		return descr, data, append([]int{size}, inner...), nil
	case array.ListLike: // list, large list, map (list view is refused below)
		if _, ok := a.(*array.ListView); ok {
			break
		}
		if _, ok := a.(*array.LargeListView); ok {
			break
		}
		offs := make([]byte, 8*(n+1))
		var first, last int64
		if n > 0 {
			first, _ = a.ValueOffsets(0)
			_, last = a.ValueOffsets(n - 1)
		}
		for i := 0; i < n; i++ {
			_, end := a.ValueOffsets(i)
			binary.LittleEndian.PutUint64(offs[8*(i+1):], uint64(end-first))
		}
		values := array.NewSlice(a.ListValues(), first, last)
		elem := listElem(a.DataType())
		if err := e.column(name+".values", values, elem.Nullable); err != nil {
			return "", nil, nil, err
		}
		return "", nil, nil, e.add(name+".offsets", "<i8", []int{n + 1}, offs)
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		for i, f := range st.Fields() {
			if err := e.column(name+"."+f.Name, a.Field(i), f.Nullable); err != nil {
				return "", nil, nil, err
			}
		}
		return "", nil, nil, nil
	case *array.Dictionary:
		dec, err := compute.TakeArray(e.ctx, a.Dictionary(), a.Indices())
		if err != nil {
			return "", nil, nil, fmt.Errorf("decode dictionary: %w", err)
		}
		return e.flat(name, dec)
	}
	if descr, ok := numericDescr(a.DataType()); ok {
		return fixedWidth(a, descr)
	}
	return "", nil, nil, fmt.Errorf("%s: %w", a.DataType(), ErrUnsupportedNPZ)
}

func listElem(t arrow.DataType) arrow.Field {
	if l, ok := t.(arrow.ListLikeType); ok {
		return l.ElemField()
	}
	return arrow.Field{Nullable: true}
}

// numericDescr is the npy dtype of a fixed-width numeric Arrow type.
func numericDescr(t arrow.DataType) (string, bool) {
	switch t.ID() {
	case arrow.INT8:
		return "|i1", true
	case arrow.UINT8:
		return "|u1", true
	case arrow.INT16:
		return "<i2", true
	case arrow.UINT16:
		return "<u2", true
	case arrow.INT32:
		return "<i4", true
	case arrow.UINT32:
		return "<u4", true
	case arrow.INT64:
		return "<i8", true
	case arrow.UINT64:
		return "<u8", true
	case arrow.FLOAT16:
		return "<f2", true
	case arrow.FLOAT32:
		return "<f4", true
	case arrow.FLOAT64:
		return "<f8", true
	}
	return "", false
}

// fixedWidth copies a numeric column's values (little-endian, as Arrow
// holds them), with nulls as 0 (NaN for floats).
func fixedWidth(a arrow.Array, descr string) (string, []byte, []int, error) {
	w := a.DataType().(arrow.FixedWidthDataType).BitWidth() / 8
	n, off := a.Len(), a.Data().Offset()
	buf := a.Data().Buffers()[1]
	b := make([]byte, n*w)
	if buf != nil {
		copy(b, buf.Bytes()[off*w:(off+n)*w])
	}
	if a.NullN() > 0 {
		var null []byte
		switch descr {
		case "<f2":
			null = []byte{0x00, 0x7e}
		case "<f4":
			null = binary.LittleEndian.AppendUint32(nil, math.Float32bits(float32(math.NaN())))
		case "<f8":
			null = binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.NaN()))
		default:
			null = make([]byte, w)
		}
		for i := 0; i < n; i++ {
			if a.IsNull(i) {
				copy(b[i*w:], null)
			}
		}
	}
	return descr, b, nil, nil
}

func floats(n int, ok func(int) bool, v func(int) float64) (string, []byte, []int, error) {
	b := make([]byte, 8*n)
	for i := 0; i < n; i++ {
		f := math.NaN()
		if ok(i) {
			f = v(i)
		}
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(f))
	}
	return "<f8", b, nil, nil
}

// natValue is numpy's NaT: the smallest int64.
const natValue = math.MinInt64

func times(n int, ok func(int) bool, descr string, v func(int) int64) (string, []byte, []int, error) {
	b := make([]byte, 8*n)
	for i := 0; i < n; i++ {
		x := int64(natValue)
		if ok(i) {
			x = v(i)
		}
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return descr, b, nil, nil
}

func (e *npzEncoder) strings(n int, ok func(int) bool, v func(int) string) (string, []byte, []int, error) {
	w := 1
	for i := 0; i < n; i++ {
		if ok(i) {
			w = max(w, utf8.RuneCountInString(v(i)))
		}
	}
	b := make([]byte, 4*w*n)
	for i := 0; i < n; i++ {
		if !ok(i) {
			continue
		}
		j := 4 * w * i
		for _, r := range v(i) {
			binary.LittleEndian.PutUint32(b[j:], uint32(r))
			j += 4
		}
	}
	return fmt.Sprintf("<U%d", w), b, nil, nil
}

func (e *npzEncoder) binary(name string, n int, ok func(int) bool, v func(int) []byte) error {
	offs := make([]byte, 8*(n+1))
	var vals []byte
	for i := 0; i < n; i++ {
		if ok(i) {
			vals = append(vals, v(i)...)
		}
		binary.LittleEndian.PutUint64(offs[8*(i+1):], uint64(len(vals)))
	}
	if vals == nil {
		vals = []byte{}
	}
	if err := e.add(name+".values", "|u1", []int{len(vals)}, vals); err != nil {
		return err
	}
	return e.add(name+".offsets", "<i8", []int{n + 1}, offs)
}

// npyHeader is the .npy v1.0 preamble: magic, version, header length and
// a Python dict literal padded with spaces to a multiple of 64 bytes.
func npyHeader(descr string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh)
	total := 10 + len(dict) + 1
	pad := (64 - total%64) % 64
	h := make([]byte, 0, total+pad)
	h = append(h, "\x93NUMPY\x01\x00"...)
	h = binary.LittleEndian.AppendUint16(h, uint16(len(dict)+pad+1))
	h = append(h, dict...)
	h = append(h, bytes.Repeat([]byte{' '}, pad)...)
	return append(h, '\n')
}

// dosDate1980 is 1980-01-01 in MS-DOS date format: the fixed timestamp of
// every entry, so equal arrays give equal archives.
const dosDate1980 = 1<<5 | 1

func (e *npzEncoder) archive() ([]byte, error) {
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, a := range e.arrays {
		hdr := npyHeader(a.descr, a.shape)
		crc := crc32.NewIEEE()
		crc.Write(hdr)
		crc.Write(a.data)
		size := uint64(len(hdr) + len(a.data))
		fh := &zip.FileHeader{Name: a.name + ".npy", Method: zip.Store, CRC32: crc.Sum32(),
			CompressedSize64: size, UncompressedSize64: size, ModifiedDate: dosDate1980}
		w, err := zw.CreateRaw(fh)
		if err != nil {
			return nil, fmt.Errorf("npz entry %s: %w", a.name, err)
		}
		w.Write(hdr) // into a bytes.Buffer: cannot fail
		w.Write(a.data)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("npz close: %w", err)
	}
	return out.Bytes(), nil
}
