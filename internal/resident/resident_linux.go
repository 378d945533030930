// Package resident lets a process that has set up and now only waits
// give back the memory it needed for that: a level's supervisor lives as
// long as the level, and hundreds may run.
package resident

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Trim returns the heap the garbage collector has freed to the kernel,
// and unmaps from this process the pages of its own executable's
// read-only mappings (code, and the tables the runtime and setup read):
// they stay in the page cache, shared by every process of the binary,
// and one needed again is mapped back when touched (a minor fault). A
// mapping with a private copy of any page (Anonymous above 0 kB in
// smaps) is left alone, since dropping that copy would lose what was
// written to it.
func Trim() {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return
	}
	defer f.Close()
	var start, end uintptr
	drop := false
	flush := func() {
		if drop && end > start {
			_, _, _ = unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_DONTNEED)
		}
		drop = false
	}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			flush()
			lo, hi, _ := strings.Cut(fs[0], "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			start, end = uintptr(a), uintptr(b)
			drop = err1 == nil && err2 == nil && len(fs) == 6 && fs[5] == exe && (fs[1] == "r--p" || fs[1] == "r-xp")
			continue
		}
		if len(fs) >= 2 && fs[0] == "Anonymous:" && fs[1] != "0" {
			drop = false
		}
	}
	flush()
}
