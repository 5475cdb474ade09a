// Package proc reads what the daemon needs to know of a process from
// Linux's /proc: its state, parent and start time (/proc/PID/stat).
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is a process's line of /proc/PID/stat, the fields the daemon uses.
type Stat struct {
	State byte   // R, S, D, Z (zombie), X (dead), …
	PPID  int    // parent process
	Start uint64 // start time, clock ticks after boot: with the pid, names one process
}

// Alive reports whether the process runs: neither a zombie nor dead.
func (s Stat) Alive() bool { return s.State != 'Z' && s.State != 'X' }

// ReadStat reads pid's /proc/PID/stat; ok is false when there is no such
// process (or its line cannot be parsed).
func ReadStat(pid int) (st Stat, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, false
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself; fields are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) == 0 {
		return Stat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return Stat{}, false
	}
	return Stat{State: f[0][0], PPID: ppid, Start: start}, true
}
