package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The permutations of views must be the same on every machine and with
// every Go release (same path, same bytes), so they do not use math/rand,
// whose bounded draws may change between releases. They use SplitMix64
// seeded from SHA-256 of (snapshot ID, seed, epoch, purpose), Lemire's
// unbiased bounded draw with rejection, and the Fisher–Yates shuffle: all
// fully specified here.

// splitMix64 is Steele, Lea and Flood's SplitMix64 generator.
type splitMix64 struct{ s uint64 }

func (r *splitMix64) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// below returns a uniform integer in [0, n), n > 0 (Lemire 2019).
func (r *splitMix64) below(n uint64) uint64 {
	hi, lo := bits.Mul64(r.next(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.next(), n)
		}
	}
	return hi
}

// newRNG seeds a generator from the snapshot identity, the view's seed
// and epoch, and a purpose label (so block order and row orders are
// independent streams).
func newRNG(id string, seed, epoch uint64, purpose string) *splitMix64 {
	h := sha256.New()
	fmt.Fprintf(h, "zenithfs-view-1\x00%s\x00%d\x00%d\x00%s", id, seed, epoch, purpose)
	return &splitMix64{s: binary.LittleEndian.Uint64(h.Sum(nil))}
}

// permutation returns a uniformly random permutation of [0, n).
func permutation(r *splitMix64, n int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	for i := n - 1; i > 0; i-- {
		j := r.below(uint64(i + 1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}
