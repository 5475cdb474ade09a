package uring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel ABI, transcribed from include/uapi/linux/io_uring.h. Only what
// this package uses is defined; the struct sizes are checked at compile time
// below.

const (
	// mmap offsets selecting which region of the ring fd to map.
	offSQRing = 0x0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	// io_uring_params.features bits.
	featSingleMmap = 1 << 0

	// io_uring_enter flags.
	enterGetEvents = 1 << 0

	// Opcodes.
	opAsyncCancel = 14 // IORING_OP_ASYNC_CANCEL, Linux 5.5
	opRead        = 22 // IORING_OP_READ, Linux 5.6

	// maxEntries is the kernel's IORING_MAX_ENTRIES.
	maxEntries = 32768
)

// sqringOffsets is struct io_sqring_offsets.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqringOffsets is struct io_cqring_offsets.
type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// params is struct io_uring_params, filled in by io_uring_setup.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is struct io_uring_sqe (64 bytes), flattened to the fields a read uses.
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe (16 bytes; no IORING_SETUP_CQE32).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Compile-time size checks: a wrong transcription fails the build.
var (
	_ [64 - unsafe.Sizeof(sqe{})]byte
	_ [unsafe.Sizeof(sqe{}) - 64]byte
	_ [16 - unsafe.Sizeof(cqe{})]byte
	_ [unsafe.Sizeof(cqe{}) - 16]byte
	_ [120 - unsafe.Sizeof(params{})]byte
	_ [unsafe.Sizeof(params{}) - 120]byte
)

// sysSetup is io_uring_setup(2).
func sysSetup(entries uint32, p *params) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// sysEnter is io_uring_enter(2) without a signal mask. It returns the number
// of SQEs the kernel consumed.
func sysEnter(fd int, toSubmit, minComplete, flags uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
