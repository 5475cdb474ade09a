package dataset

import "sort"

// Quality measures how far a view's epoch order is from the natural
// order, over all rows of the epoch sequence (ranks are ignored).
type Quality struct {
	Rows int64
	// MeanDisplacement is the mean |output position − natural position|
	// divided by the row count: 0 for the natural order, about 1/3 for a
	// uniformly random permutation.
	MeanDisplacement float64
	// KendallTau is the rank correlation with the natural order: 1 for
	// the natural order, about 0 for a uniformly random permutation.
	KendallTau float64
	// LocalTau is the mean Kendall tau within files: how ordered rows stay
	// inside one batch (1 when batches are whole natural batches).
	LocalTau float64
}

// ShuffleQuality computes the Quality of v's epoch (v's spec without its
// rank) from row indices alone; it reads no data.
func ShuffleQuality(s *Snapshot, v *View) Quality {
	spec := v.spec
	spec.Rank, spec.World = 0, 0
	full, err := s.View(spec)
	if err != nil {
		return Quality{}
	}
	var order []int64
	var local float64
	for k := 0; k < full.NumBatches(); k++ {
		rows := full.RowIndices(k)
		local += kendallTau(rows)
		order = append(order, rows...)
	}
	q := Quality{Rows: int64(len(order))}
	if len(order) < 2 {
		return q
	}
	var disp float64
	for i, r := range order {
		d := float64(int64(i) - r)
		if d < 0 {
			d = -d
		}
		disp += d
	}
	n := float64(len(order))
	q.MeanDisplacement = disp / n / n
	q.KendallTau = kendallTau(order)
	q.LocalTau = local / float64(full.NumBatches())
	return q
}

// kendallTau of a sequence of distinct values against sorted order,
// counting inversions by merge sort in O(n log n).
func kendallTau(xs []int64) float64 {
	n := len(xs)
	if n < 2 {
		return 1
	}
	a := append([]int64(nil), xs...)
	inv := countInversions(a, make([]int64, n))
	pairs := float64(n) * float64(n-1) / 2
	return 1 - 2*float64(inv)/pairs
}

func countInversions(a, tmp []int64) int64 {
	if len(a) < 2 {
		return 0
	}
	if len(a) <= 16 && sort.SliceIsSorted(a, func(i, j int) bool { return a[i] < a[j] }) {
		return 0
	}
	m := len(a) / 2
	inv := countInversions(a[:m], tmp[:m]) + countInversions(a[m:], tmp[m:])
	i, j, k := 0, m, 0
	for i < m && j < len(a) {
		if a[i] <= a[j] {
			tmp[k] = a[i]
			i++
		} else {
			tmp[k] = a[j]
			inv += int64(m - i)
			j++
		}
		k++
	}
	k += copy(tmp[k:], a[i:m])
	copy(tmp[k:], a[j:])
	copy(a, tmp[:len(a)])
	return inv
}
