package benchkit

import (
	"os"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("Median reordered its input: %v", tc.in)
			}
		}
	}
}

func TestCPUCounters(t *testing.T) {
	c0, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	s0 := SelfCPU()
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
	}
	c1, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := c1 - c0; d < 50*time.Millisecond {
		t.Errorf("/proc CPU grew by %v over 150ms of spinning", d)
	}
	if d := SelfCPU() - s0; d < 50*time.Millisecond {
		t.Errorf("rusage CPU grew by %v over 150ms of spinning", d)
	}
	if _, err := ProcCPU(1 << 30); err == nil {
		t.Error("CPU of a process that does not exist")
	}
}
