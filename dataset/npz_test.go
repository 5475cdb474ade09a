package dataset

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// npzSchema has one column of every type the npz mapping supports.
func npzSchema() *arrow.Schema {
	f := func(name string, t arrow.DataType, nullable bool) arrow.Field {
		return arrow.Field{Name: name, Type: t, Nullable: nullable}
	}
	return arrow.NewSchema([]arrow.Field{
		f("i8", arrow.PrimitiveTypes.Int8, false),
		f("u8", arrow.PrimitiveTypes.Uint8, false),
		f("i16", arrow.PrimitiveTypes.Int16, false),
		f("u16", arrow.PrimitiveTypes.Uint16, false),
		f("i32", arrow.PrimitiveTypes.Int32, true),
		f("u32", arrow.PrimitiveTypes.Uint32, false),
		f("i64", arrow.PrimitiveTypes.Int64, false),
		f("u64", arrow.PrimitiveTypes.Uint64, false),
		f("f16", arrow.FixedWidthTypes.Float16, false),
		f("f32", arrow.PrimitiveTypes.Float32, false),
		f("f64", arrow.PrimitiveTypes.Float64, true),
		f("b", arrow.FixedWidthTypes.Boolean, true),
		f("s", arrow.BinaryTypes.String, true),
		f("ls", arrow.BinaryTypes.LargeString, false),
		f("bin", arrow.BinaryTypes.Binary, true),
		f("lbin", arrow.BinaryTypes.LargeBinary, false),
		f("fsb", &arrow.FixedSizeBinaryType{ByteWidth: 3}, false),
		f("d32", arrow.FixedWidthTypes.Date32, false),
		f("d64", arrow.FixedWidthTypes.Date64, false),
		f("ts_s", &arrow.TimestampType{Unit: arrow.Second}, false),
		f("ts_ns", &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}, true),
		f("dur", &arrow.DurationType{Unit: arrow.Millisecond}, false),
		f("t32", arrow.FixedWidthTypes.Time32ms, false),
		f("t64", arrow.FixedWidthTypes.Time64us, false),
		f("dec", &arrow.Decimal128Type{Precision: 10, Scale: 2}, true),
		f("dec256", &arrow.Decimal256Type{Precision: 20, Scale: 3}, false),
		f("fsl", arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float32), false),
		f("lst", arrow.ListOf(arrow.PrimitiveTypes.Int32), true),
		f("llst", arrow.LargeListOfNonNullable(arrow.BinaryTypes.String), false),
		f("m", arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64), false),
		f("st", arrow.StructOf(
			arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Float32},
			arrow.Field{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true}), true),
		f("nul", arrow.Null, true),
	}, nil)
}

// npzRows are three rows of npzSchema, with nulls in every nullable column.
const npzRows = `[
 {"i8": -8, "u8": 200, "i16": -16000, "u16": 60000, "i32": -7, "u32": 4000000000, "i64": -9000000000000, "u64": 18000000000000000000,
  "f16": 1.5, "f32": 0.25, "f64": 3.125, "b": true, "s": "héllo", "ls": "big", "bin": "AAEC", "lbin": "", "fsb": "YWJj",
  "d32": 19000, "d64": 1641600000000, "ts_s": 1700000000, "ts_ns": 1700000000123456789, "dur": 1500, "t32": 3600000, "t64": 1000001,
  "dec": "123.45", "dec256": "-1.5", "fsl": [1, 2], "lst": [1, null, 3], "llst": ["a", "bc"], "m": [{"key": "k", "value": 1}],
  "st": {"x": 0.5, "label": "p"}, "nul": null},
 {"i8": 1, "u8": 0, "i16": 2, "u16": 3, "i32": null, "u32": 5, "i64": 6, "u64": 7,
  "f16": -2, "f32": -0.5, "f64": null, "b": null, "s": null, "ls": "", "bin": null, "lbin": "/w==", "fsb": "AAAA",
  "d32": 0, "d64": 0, "ts_s": 0, "ts_ns": null, "dur": -1, "t32": 0, "t64": 0,
  "dec": null, "dec256": "0", "fsl": [3, 4], "lst": null, "llst": [], "m": [],
  "st": null, "nul": null},
 {"i8": 127, "u8": 255, "i16": 32767, "u16": 65535, "i32": 2147483647, "u32": 0, "i64": 9223372036854775807, "u64": 0,
  "f16": 0, "f32": 1e30, "f64": -0.0, "b": false, "s": "日本語テキスト", "ls": "x", "bin": "", "lbin": "AA==", "fsb": "eHl6",
  "d32": -1, "d64": -86400000, "ts_s": -1, "ts_ns": 1, "dur": 0, "t32": 86399999, "t64": 86399999999,
  "dec": "-0.01", "dec256": "12345678901234567.891", "fsl": [5, 6], "lst": [], "llst": ["ünï"], "m": [{"key": "a", "value": -1}, {"key": "b", "value": 2}],
  "st": {"x": -1, "label": null}, "nul": null}
]`

func npzRecord(t *testing.T) arrow.RecordBatch {
	t.Helper()
	rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, npzSchema(), strings.NewReader(npzRows))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func u64(a NPYArray, i int) uint64  { return binary.LittleEndian.Uint64(a.Data[8*i:]) }
func f64(a NPYArray, i int) float64 { return math.Float64frombits(u64(a, i)) }

func TestNPZRoundTripEveryType(t *testing.T) {
	rec := npzRecord(t)
	b, err := EncodeNPZ(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := EncodeNPZ(context.Background(), rec)
	if !bytes.Equal(b, again) {
		t.Fatal("npz encoding is not deterministic")
	}
	z, err := ReadNPZ(b)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name, descr string, shape ...int) NPYArray {
		t.Helper()
		a, ok := z[name]
		if !ok {
			t.Fatalf("no array %q", name)
		}
		if a.Descr != descr || len(a.Shape) != len(shape) {
			t.Fatalf("%s: descr %s shape %v, want %s %v", name, a.Descr, a.Shape, descr, shape)
		}
		for i := range shape {
			if a.Shape[i] != shape[i] {
				t.Fatalf("%s: shape %v, want %v", name, a.Shape, shape)
			}
		}
		size := a.Len() * itemSize(descr)
		if len(a.Data) != size {
			t.Fatalf("%s: %d data bytes, want %d", name, len(a.Data), size)
		}
		return a
	}
	eqBytes := func(name string, got []byte, want ...byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got % x, want % x", name, got, want)
		}
	}
	le := func(vals ...any) []byte {
		var buf bytes.Buffer
		for _, v := range vals {
			binary.Write(&buf, binary.LittleEndian, v)
		}
		return buf.Bytes()
	}
	eqBytes("i8", get("i8", "|i1", 3).Data, le(int8(-8), int8(1), int8(127))...)
	eqBytes("u8", get("u8", "|u1", 3).Data, 200, 0, 255)
	eqBytes("i16", get("i16", "<i2", 3).Data, le(int16(-16000), int16(2), int16(32767))...)
	eqBytes("u16", get("u16", "<u2", 3).Data, le(uint16(60000), uint16(3), uint16(65535))...)
	eqBytes("i32", get("i32", "<i4", 3).Data, le(int32(-7), int32(0), int32(2147483647))...)
	eqBytes("i32.valid", get("i32.valid", "|b1", 3).Data, 1, 0, 1)
	eqBytes("u32", get("u32", "<u4", 3).Data, le(uint32(4000000000), uint32(5), uint32(0))...)
	eqBytes("i64", get("i64", "<i8", 3).Data, le(int64(-9000000000000), int64(6), int64(math.MaxInt64))...)
	eqBytes("u64", get("u64", "<u8", 3).Data, le(uint64(18000000000000000000), uint64(7), uint64(0))...)
	eqBytes("f16", get("f16", "<f2", 3).Data, le(float16.New(1.5).Uint16(), float16.New(-2).Uint16(), float16.New(0).Uint16())...)
	eqBytes("f32", get("f32", "<f4", 3).Data, le(float32(0.25), float32(-0.5), float32(1e30))...)
	if a := get("f64", "<f8", 3); f64(a, 0) != 3.125 || !math.IsNaN(f64(a, 1)) || !math.Signbit(f64(a, 2)) {
		t.Errorf("f64: %v %v %v", f64(a, 0), f64(a, 1), f64(a, 2))
	}
	eqBytes("f64.valid", get("f64.valid", "|b1", 3).Data, 1, 0, 1)
	eqBytes("b", get("b", "|b1", 3).Data, 1, 0, 0)
	eqBytes("b.valid", get("b.valid", "|b1", 3).Data, 1, 0, 1)
	if s := get("s", "<U7", 3); s.Unicode(0) != "héllo" || s.Unicode(1) != "" || s.Unicode(2) != "日本語テキスト" {
		t.Errorf("s: %q %q %q", s.Unicode(0), s.Unicode(1), s.Unicode(2))
	}
	eqBytes("s.valid", get("s.valid", "|b1", 3).Data, 1, 0, 1)
	if s := get("ls", "<U3", 3); s.Unicode(0) != "big" || s.Unicode(1) != "" || s.Unicode(2) != "x" {
		t.Errorf("ls: %q %q %q", s.Unicode(0), s.Unicode(1), s.Unicode(2))
	}
	if _, ok := z["ls.valid"]; ok {
		t.Error("ls is not nullable but has ls.valid")
	}
	eqBytes("bin.values", get("bin.values", "|u1", 3).Data, 0, 1, 2)
	eqBytes("bin.offsets", get("bin.offsets", "<i8", 4).Data, le(int64(0), int64(3), int64(3), int64(3))...)
	eqBytes("bin.valid", get("bin.valid", "|b1", 3).Data, 1, 0, 1)
	eqBytes("lbin.values", get("lbin.values", "|u1", 2).Data, 0xff, 0)
	eqBytes("lbin.offsets", get("lbin.offsets", "<i8", 4).Data, le(int64(0), int64(0), int64(1), int64(2))...)
	eqBytes("fsb", get("fsb", "|u1", 3, 3).Data, 'a', 'b', 'c', 0, 0, 0, 'x', 'y', 'z')
	eqBytes("d32", get("d32", "<M8[D]", 3).Data, le(int64(19000), int64(0), int64(-1))...)
	eqBytes("d64", get("d64", "<M8[ms]", 3).Data, le(int64(1641600000000), int64(0), int64(-86400000))...)
	eqBytes("ts_s", get("ts_s", "<M8[s]", 3).Data, le(int64(1700000000), int64(0), int64(-1))...)
	eqBytes("ts_ns", get("ts_ns", "<M8[ns]", 3).Data, le(int64(1700000000123456789), int64(math.MinInt64), int64(1))...)
	eqBytes("dur", get("dur", "<m8[ms]", 3).Data, le(int64(1500), int64(-1), int64(0))...)
	eqBytes("t32", get("t32", "<m8[ms]", 3).Data, le(int64(3600000), int64(0), int64(86399999))...)
	eqBytes("t64", get("t64", "<m8[us]", 3).Data, le(int64(1000001), int64(0), int64(86399999999))...)
	if a := get("dec", "<f8", 3); f64(a, 0) != 123.45 || !math.IsNaN(f64(a, 1)) || f64(a, 2) != -0.01 {
		t.Errorf("dec: %v %v %v", f64(a, 0), f64(a, 1), f64(a, 2))
	}
	if a := get("dec256", "<f8", 3); f64(a, 0) != -1.5 || f64(a, 1) != 0 || math.Abs(f64(a, 2)-12345678901234567.891) > 4 {
		t.Errorf("dec256: %v %v %v", f64(a, 0), f64(a, 1), f64(a, 2))
	}
	eqBytes("fsl", get("fsl", "<f4", 3, 2).Data, le(float32(1), float32(2), float32(3), float32(4), float32(5), float32(6))...)
	eqBytes("lst.values", get("lst.values", "<i4", 3).Data, le(int32(1), int32(0), int32(3))...)
	eqBytes("lst.values.valid", get("lst.values.valid", "|b1", 3).Data, 1, 0, 1)
	eqBytes("lst.offsets", get("lst.offsets", "<i8", 4).Data, le(int64(0), int64(3), int64(3), int64(3))...)
	eqBytes("lst.valid", get("lst.valid", "|b1", 3).Data, 1, 0, 1)
	if a := get("llst.values", "<U3", 3); a.Unicode(0) != "a" || a.Unicode(1) != "bc" || a.Unicode(2) != "ünï" {
		t.Errorf("llst.values: %q %q %q", a.Unicode(0), a.Unicode(1), a.Unicode(2))
	}
	eqBytes("llst.offsets", get("llst.offsets", "<i8", 4).Data, le(int64(0), int64(2), int64(2), int64(3))...)
	if a := get("m.values.key", "<U1", 3); a.Unicode(0) != "k" || a.Unicode(1) != "a" || a.Unicode(2) != "b" {
		t.Errorf("m.values.key: %q %q %q", a.Unicode(0), a.Unicode(1), a.Unicode(2))
	}
	eqBytes("m.values.value", get("m.values.value", "<i8", 3).Data, le(int64(1), int64(-1), int64(2))...)
	eqBytes("m.offsets", get("m.offsets", "<i8", 4).Data, le(int64(0), int64(1), int64(1), int64(3))...)
	eqBytes("st.valid", get("st.valid", "|b1", 3).Data, 1, 0, 1)
	if a := get("st.x", "<f4", 3); math.Float32frombits(binary.LittleEndian.Uint32(a.Data)) != 0.5 ||
		math.Float32frombits(binary.LittleEndian.Uint32(a.Data[8:])) != -1 {
		t.Errorf("st.x: % x", a.Data)
	}
	if a := get("st.label", "<U1", 3); a.Unicode(0) != "p" || a.Unicode(2) != "" {
		t.Errorf("st.label: %q %q", a.Unicode(0), a.Unicode(2))
	}
	eqBytes("st.label.valid", get("st.label.valid", "|b1", 3).Data[2:], 0)
	eqBytes("nul.valid", get("nul.valid", "|b1", 3).Data, 0, 0, 0)

	// A slice (offset ≠ 0) maps the same as the rows it holds.
	sl := rec.NewSlice(1, 3)
	sb, err := EncodeNPZ(context.Background(), sl)
	if err != nil {
		t.Fatal(err)
	}
	zs, err := ReadNPZ(sb)
	if err != nil {
		t.Fatal(err)
	}
	eqBytes("slice i64", zs["i64"].Data, le(int64(6), int64(math.MaxInt64))...)
	eqBytes("slice bin.offsets", zs["bin.offsets"].Data, le(int64(0), int64(0), int64(0))...)
	eqBytes("slice lst.offsets", zs["lst.offsets"].Data, le(int64(0), int64(0), int64(0))...)
	eqBytes("slice m.offsets", zs["m.offsets"].Data, le(int64(0), int64(0), int64(2))...)
	eqBytes("slice fsl", zs["fsl"].Data, le(float32(3), float32(4), float32(5), float32(6))...)
	eqBytes("slice st.valid", zs["st.valid"].Data, 0, 1)
	if a := zs["llst.values"]; a.Len() != 1 || a.Unicode(0) != "ünï" {
		t.Errorf("slice llst.values: %v %q", a.Shape, a.Unicode(0))
	}
}

func itemSize(descr string) int {
	switch {
	case strings.HasPrefix(descr, "<U"):
		n := 0
		for _, c := range descr[2:] {
			n = n*10 + int(c-'0')
		}
		return 4 * n
	case strings.HasPrefix(descr, "<M8"), strings.HasPrefix(descr, "<m8"):
		return 8
	}
	return int(descr[2] - '0')
}

func TestNPZDictionaryAndUnsupported(t *testing.T) {
	mem := memory.DefaultAllocator
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}
	bld := array.NewDictionaryBuilder(mem, dt).(*array.BinaryDictionaryBuilder)
	for _, s := range []string{"cat", "dog", "cat"} {
		bld.AppendString(s)
	}
	dict := bld.NewArray()
	sch := arrow.NewSchema([]arrow.Field{{Name: "pet", Type: dt}}, nil)
	b, err := EncodeNPZ(context.Background(), array.NewRecordBatch(sch, []arrow.Array{dict}, 3))
	if err != nil {
		t.Fatal(err)
	}
	z, err := ReadNPZ(b)
	if err != nil {
		t.Fatal(err)
	}
	if a := z["pet"]; a.Descr != "<U3" || a.Unicode(0) != "cat" || a.Unicode(1) != "dog" || a.Unicode(2) != "cat" {
		t.Errorf("dictionary: %s %q %q %q", a.Descr, a.Unicode(0), a.Unicode(1), a.Unicode(2))
	}

	lv := arrow.ListViewOf(arrow.PrimitiveTypes.Int32)
	lvb := array.NewBuilder(mem, lv)
	lvb.AppendNull()
	usch := arrow.NewSchema([]arrow.Field{{Name: "lv", Type: lv, Nullable: true}}, nil)
	_, err = EncodeNPZ(context.Background(), array.NewRecordBatch(usch, []arrow.Array{lvb.NewArray()}, 1))
	if !errors.Is(err, ErrUnsupportedNPZ) || !strings.Contains(err.Error(), "lv") {
		t.Fatalf("list view: err %v, want ErrUnsupportedNPZ naming the column", err)
	}
}
