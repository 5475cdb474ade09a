package dataset

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadView is wrapped by every error about a malformed view spec.
var ErrBadView = errors.New("bad view spec")

// Shuffle is how a view permutes its epoch.
type Shuffle int

const (
	// ShuffleNone keeps the natural order (no seed given).
	ShuffleNone Shuffle = iota
	// ShuffleBatch permutes whole natural batches: each file's bytes equal a natural batch's.
	ShuffleBatch
	// ShuffleBlock permutes blocks of K natural batches and shuffles rows within each block.
	ShuffleBlock
)

// View formats.
const (
	FormatArrow = "arrow"
	FormatNPZ   = "npz"
)

// maxBlock bounds shuffle=block:K: K batches are decoded at once.
const maxBlock = 4096

// ViewSpec is a parsed view path component such as
// "seed=7,epoch=3,shuffle=block:16,rank=1,world=4,format=npz".
type ViewSpec struct {
	Seed    uint64
	Epoch   uint64
	Seeded  bool    // shuffled: seed=, epoch= or shuffle= was given (seed 0 unless said)
	Shuffle Shuffle // ShuffleBatch by default when Seeded
	Block   int     // K of shuffle=block:K
	Rank    int
	World   int    // 0: not sharded
	Format  string // FormatArrow (default) or FormatNPZ
}

// ParseViewSpec parses one path component of comma-separated key=value
// pairs in any order. Keys: seed, epoch, shuffle (batch | block:K), rank,
// world, format (arrow | npz). Errors wrap ErrBadView and say why.
func ParseViewSpec(s string) (ViewSpec, error) {
	var v ViewSpec
	bad := func(format string, args ...any) (ViewSpec, error) {
		return ViewSpec{}, fmt.Errorf("%w %q: %s", ErrBadView, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty")
	}
	seen := map[string]bool{}
	shuffle := ""
	for _, pair := range strings.Split(s, ",") {
		key, val, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			return bad("%q is not key=value", pair)
		}
		if seen[key] {
			return bad("duplicate key %q", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "seed":
			v.Seed, err = parseUint(val, 64)
			v.Seeded = true
		case "epoch":
			v.Epoch, err = parseUint(val, 64)
		case "rank":
			var n uint64
			n, err = parseUint(val, 31)
			v.Rank = int(n)
		case "world":
			var n uint64
			n, err = parseUint(val, 31)
			v.World = int(n)
			if err == nil && n == 0 {
				err = errors.New("must be at least 1")
			}
		case "shuffle":
			shuffle = val
			switch {
			case val == "batch":
				v.Shuffle = ShuffleBatch
			case strings.HasPrefix(val, "block:"):
				var n uint64
				n, err = parseUint(strings.TrimPrefix(val, "block:"), 31)
				if err == nil && (n < 1 || n > maxBlock) {
					err = fmt.Errorf("block size must be 1..%d", maxBlock)
				}
				v.Shuffle, v.Block = ShuffleBlock, int(n)
			default:
				err = errors.New("want batch or block:K")
			}
		case "format":
			switch val {
			case FormatArrow, FormatNPZ:
				v.Format = val
			default:
				err = errors.New("want arrow or npz")
			}
		default:
			return bad("unknown key %q (want seed, epoch, shuffle, rank, world, format)", key)
		}
		if err != nil {
			return bad("%s=%s: %v", key, val, err)
		}
	}
	// An epoch or a shuffle asks for a shuffled order: without a seed it
	// is seed 0's (the same bytes as seed=0 spelt out).
	if (seen["epoch"] || shuffle != "") && !v.Seeded {
		v.Seeded = true
	}
	switch {
	case seen["rank"] != seen["world"]:
		return bad("rank and world go together")
	case seen["world"] && v.Rank >= v.World:
		return bad("rank %d is not below world %d", v.Rank, v.World)
	}
	if v.Seeded && v.Shuffle == ShuffleNone {
		v.Shuffle = ShuffleBatch
	}
	if v.Format == "" {
		v.Format = FormatArrow
	}
	return v, nil
}

// parseUint accepts plain decimal digits only: no sign, no spaces, no hex,
// so that every accepted spec has one obvious meaning.
func parseUint(s string, bits int) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n, nil
}

// String is the canonical form of the spec: keys in a fixed order,
// defaults left out (an empty spec prints as "natural"). Equivalent specs
// have equal strings and serve equal bytes.
func (v ViewSpec) String() string {
	var parts []string
	if v.Seeded {
		parts = append(parts, fmt.Sprintf("seed=%d", v.Seed), fmt.Sprintf("epoch=%d", v.Epoch))
		if v.Shuffle == ShuffleBlock {
			parts = append(parts, fmt.Sprintf("shuffle=block:%d", v.Block))
		}
	}
	if v.World > 0 {
		parts = append(parts, fmt.Sprintf("rank=%d", v.Rank), fmt.Sprintf("world=%d", v.World))
	}
	if v.Format == FormatNPZ {
		parts = append(parts, "format=npz")
	}
	if len(parts) == 0 {
		return "natural"
	}
	return strings.Join(parts, ",")
}

// Ext is the file extension of the view's files.
func (v ViewSpec) Ext() string {
	if v.Format == FormatNPZ {
		return ".npz"
	}
	return ".arrow"
}
