package level

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Proc names a process across PID reuse.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start_time"` // clock ticks after boot, /proc/PID/stat field 22
}

// Alive reports whether p is still the same live process (a zombie is not).
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, state, err := procStart(p.PID)
	return err == nil && st == p.Start && state != 'Z' && state != 'X'
}

func self() Proc { return procOf(os.Getpid()) }

func procOf(pid int) Proc {
	st, _, _ := procStart(pid)
	return Proc{PID: pid, Start: st}
}

// procStart reads a process's start time and state letter.
func procStart(pid int) (uint64, byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, f[0][0], err
}

// sameProc reports whether the caller's PID pid is the live process rec
// names: same start time, and rec.PID among its PIDs in every PID
// namespace from the caller's down (/proc/PID/status NSpid).
func sameProc(rec Proc, pid int) bool {
	if pid <= 0 || !(Proc{PID: pid, Start: rec.Start}).Alive() {
		return false
	}
	st, err := procStatus(pid)
	return err == nil && slices.Contains(st.nspid, rec.PID)
}

// ppid is the caller's PID of pid's parent.
func ppid(pid int) int {
	st, err := procStatus(pid)
	if err != nil {
		return 0
	}
	return st.ppid
}

type status struct {
	ppid  int
	nspid []int
}

func procStatus(pid int) (status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return status{}, err
	}
	return parseStatus(string(b)), nil
}

// parseStatus takes PPid and NSpid from /proc/PID/status text.
func parseStatus(text string) status {
	var st status
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "PPid":
			st.ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		case "NSpid":
			for _, f := range strings.Fields(v) {
				if n, err := strconv.Atoi(f); err == nil {
					st.nspid = append(st.nspid, n)
				}
			}
		}
	}
	return st
}
