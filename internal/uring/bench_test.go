package uring

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkReadRanges reads 256 random 4 KiB ranges of a 32 MiB file per
// operation, through io_uring in one batch and through pread one range at a
// time: "warm" from the page cache, "cold" after dropping the file's pages
// (posix_fadvise DONTNEED, outside the timer) so that the reads reach the
// device and io_uring's queue depth can matter.
func BenchmarkReadRanges(b *testing.B) {
	const fileSize, ranges, rangeSize = 32 << 20, 256, 4 << 10
	data, fd := testFile(b, fileSize, 21)
	for _, bc := range []struct {
		name string
		mode Mode
		cold bool
	}{{"warm/uring", ModeOn, false}, {"warm/pread", ModeOff, false}, {"cold/uring", ModeOn, true}, {"cold/pread", ModeOff, true}} {
		mode := bc.mode
		b.Run(bc.name, func(b *testing.B) {
			rd, err := NewReader(Options{Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer rd.Close()
			rng := rand.New(rand.NewPCG(1, 1))
			reqs := make([]Req, ranges)
			for i := range reqs {
				off := rng.IntN(len(data)/rangeSize) * rangeSize
				reqs[i] = Req{Off: int64(off), Buf: make([]byte, rangeSize)}
			}
			b.SetBytes(ranges * rangeSize)
			b.ResetTimer()
			for b.Loop() {
				if bc.cold {
					b.StopTimer()
					if err := unix.Fdatasync(fd); err != nil {
						b.Fatal(err)
					}
					if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if err := rd.ReadRanges(fd, reqs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
