package dataset

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/zenithfs/zenithfs/format"
)

// NPYArray is one array of an npz archive, as ReadNPZ decodes it.
type NPYArray struct {
	Descr string // numpy dtype string, e.g. "<i8", "<U7", "<M8[us]"
	Shape []int
	Data  []byte // C order, little-endian
}

var npyDict = regexp.MustCompile(`^\{'descr': '([^']+)', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}\s*$`)

// ReadNPZ decodes an npz archive written by EncodeNPZ (or by numpy.savez
// with the same header layout) into its arrays by name (without ".npy").
// It is the Go reader for tests and tools; it accepts only C-order v1.0
// headers. Errors wrap format.ErrCorrupt.
func ReadNPZ(b []byte) (map[string]NPYArray, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("npz: %v: %w", err, format.ErrCorrupt)
	}
	out := map[string]NPYArray{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("npz %s: %v: %w", f.Name, err, format.ErrCorrupt)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("npz %s: %v: %w", f.Name, err, format.ErrCorrupt)
		}
		a, err := readNPY(data)
		if err != nil {
			return nil, fmt.Errorf("npz %s: %w", f.Name, err)
		}
		out[strings.TrimSuffix(f.Name, ".npy")] = a
	}
	return out, nil
}

func readNPY(b []byte) (NPYArray, error) {
	if len(b) < 10 || string(b[:8]) != "\x93NUMPY\x01\x00" {
		return NPYArray{}, fmt.Errorf("not an npy v1.0 array: %w", format.ErrCorrupt)
	}
	hl := int(binary.LittleEndian.Uint16(b[8:10]))
	if len(b) < 10+hl {
		return NPYArray{}, fmt.Errorf("short npy header: %w", format.ErrCorrupt)
	}
	m := npyDict.FindStringSubmatch(string(b[10 : 10+hl]))
	if m == nil {
		return NPYArray{}, fmt.Errorf("npy header %q: %w", b[10:10+hl], format.ErrCorrupt)
	}
	a := NPYArray{Descr: m[1], Data: b[10+hl:]}
	for _, d := range strings.Split(m[2], ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		n, err := strconv.Atoi(d)
		if err != nil {
			return NPYArray{}, fmt.Errorf("npy shape %q: %w", m[2], format.ErrCorrupt)
		}
		a.Shape = append(a.Shape, n)
	}
	return a, nil
}

// Len is the number of elements (the product of the shape).
func (a NPYArray) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Int64 returns element i of an 8-byte integer, datetime64 or timedelta64 array.
func (a NPYArray) Int64(i int) int64 { return int64(binary.LittleEndian.Uint64(a.Data[8*i:])) }

// Bool returns element i of a '|b1' array.
func (a NPYArray) Bool(i int) bool { return a.Data[i] != 0 }

// Unicode returns element i of a '<U{w}' array, without trailing NULs
// (as numpy does).
func (a NPYArray) Unicode(i int) string {
	w, err := strconv.Atoi(strings.TrimPrefix(a.Descr, "<U"))
	if err != nil {
		return ""
	}
	rs := make([]rune, w)
	for j := range rs {
		rs[j] = rune(binary.LittleEndian.Uint32(a.Data[4*(w*i+j):]))
	}
	for len(rs) > 0 && rs[len(rs)-1] == 0 {
		rs = rs[:len(rs)-1]
	}
	return string(rs)
}
