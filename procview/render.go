// Package procview renders the /proc and /sys files a level's processes
// see with Config.ProcView: the host's files, rewritten to show the
// limits of the reader's own cgroup and every ancestor (its CPUs, its
// memory, its swap, its uptime and load), as lxcfs does for containers,
// so that programs that size themselves from /proc (nproc, free, thread
// pools, JVM heaps) fit the level. The renderers here are pure; the
// limits come from the cgroup tree (view_linux.go) and reach the level
// through a FUSE file system (fuse_linux.go).
package procview

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// View is what a reader may use: its CPUs, memory and swap, and what its
// cgroup has used of them.
type View struct {
	// CPUs are the host CPU numbers the reader may run on, as many as
	// it may use (the smaller of its cpuset and its quota rounded up).
	CPUs []int
	// MemTotal is the memory limit (the host's memory if smaller or
	// none); MemUsed what the cgroup uses, of which MemCache is page cache.
	MemTotal, MemUsed, MemCache uint64
	// SwapTotal is the swap limit (the host's swap if smaller or none),
	// SwapUsed what the cgroup has swapped out.
	SwapTotal, SwapUsed uint64
	// Shmem and Slab (reclaimable and not) are the cgroup's, where the
	// kernel says (cgroup v2; v1 has no slab figures: 0).
	Shmem, SlabReclaimable, SlabUnreclaimable uint64
	// UserUsec and SystemUsec are the cgroup's CPU time.
	UserUsec, SystemUsec uint64
	// Uptime is how long the level has run; Load the 1, 5 and 15 minute
	// load averages of its tasks, Running and Tasks their counts now.
	Uptime         time.Duration
	Load           [3]float64
	Running, Tasks int
}

// Online is /sys/devices/system/cpu/online: the reader's CPUs, numbered
// from 0.
func Online(v *View) string {
	if len(v.CPUs) <= 1 {
		return "0\n"
	}
	return fmt.Sprintf("0-%d\n", len(v.CPUs)-1)
}

// CPUInfo is /proc/cpuinfo with the blocks of the reader's CPUs only,
// renumbered from 0 (processor, and the core and sibling counts that
// programs also read).
func CPUInfo(host string, v *View) string {
	want := map[int]int{}
	for i, c := range v.CPUs {
		want[c] = i
	}
	var b strings.Builder
	for _, block := range strings.Split(strings.TrimRight(host, "\n"), "\n\n") {
		n, ok := -1, false
		for _, line := range strings.Split(block, "\n") {
			k, val, _ := strings.Cut(line, ":")
			if strings.TrimSpace(k) == "processor" {
				c, err := strconv.Atoi(strings.TrimSpace(val))
				n, ok = want[c]
				if err != nil {
					ok = false
				}
				break
			}
		}
		if !ok {
			continue
		}
		for _, line := range strings.Split(block, "\n") {
			k, _, _ := strings.Cut(line, ":")
			switch strings.TrimSpace(k) {
			case "processor":
				line = fmt.Sprintf("%s: %d", k, n)
			case "siblings", "cpu cores":
				line = fmt.Sprintf("%s: %d", k, len(v.CPUs))
			case "core id", "apicid", "initial apicid":
				line = fmt.Sprintf("%s: %d", k, n)
			}
			b.WriteString(line + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Meminfo is /proc/meminfo with the reader's memory and swap: MemTotal
// the limit, MemFree and MemAvailable what is left of it (the page cache
// counted as available), SwapTotal and SwapFree the same for swap. The
// other lines are the host's, capped at MemTotal.
func Meminfo(host string, v *View) string {
	kb := func(n uint64) uint64 { return n / 1024 }
	free := uint64(0)
	if v.MemUsed < v.MemTotal {
		free = v.MemTotal - v.MemUsed
	}
	avail := min(free+v.MemCache, v.MemTotal)
	swapFree := uint64(0)
	if v.SwapUsed < v.SwapTotal {
		swapFree = v.SwapTotal - v.SwapUsed
	}
	// The lines the view sets; the others are the host's, capped.
	set := func(k string) (uint64, bool) {
		switch k {
		case "MemTotal":
			return kb(v.MemTotal), true
		case "MemFree":
			return kb(free), true
		case "MemAvailable":
			return kb(avail), true
		case "Cached":
			return kb(v.MemCache), true
		case "Buffers", "SwapCached":
			return 0, true
		case "SwapTotal":
			return kb(v.SwapTotal), true
		case "SwapFree":
			return kb(swapFree), true
		case "Shmem":
			return kb(v.Shmem), true
		case "SReclaimable":
			return kb(v.SlabReclaimable), true
		case "SUnreclaim":
			return kb(v.SlabUnreclaimable), true
		case "Slab":
			return kb(v.SlabReclaimable + v.SlabUnreclaimable), true
		}
		return 0, false
	}
	// Built by appending, not with fmt: a read of the view renders it
	// afresh, and this is most of what the rendering costs.
	b := make([]byte, 0, len(host)+64)
	for rest := host; rest != ""; {
		line, after, _ := strings.Cut(rest, "\n")
		rest = after
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			b = append(append(b, line...), '\n')
			continue
		}
		n, ok := set(k)
		if !ok {
			// The host's own figure, but never above the level's total.
			num, unit, _ := strings.Cut(strings.TrimSpace(val), " ")
			if h, err := strconv.ParseUint(num, 10, 64); err == nil && unit == "kB" {
				n, ok = min(h, kb(v.MemTotal)), true
			}
		}
		if !ok {
			b = append(append(b, line...), '\n')
			continue
		}
		b = appendPadded(append(b, k...), len(k), n)
		b = append(b, " kB\n"...)
	}
	return string(b)
}

// appendPadded appends a colon and n after a key of length k, as fmt's
// "%-16s%8d" would with the key and its colon.
func appendPadded(b []byte, k int, n uint64) []byte {
	b = append(b, ':')
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], n, 10)
	for pad := max(16-(k+1), 0) + max(8-len(d), 0); pad > 0; pad-- {
		b = append(b, ' ')
	}
	return append(b, d...)
}

// Swaps is /proc/swaps: one virtual device the size of the reader's swap,
// if it has any.
func Swaps(v *View) string {
	s := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
	if v.SwapTotal > 0 {
		s += fmt.Sprintf("none\t\t\t\t\tvirtual\t\t%d\t\t%d\t\t0\n", v.SwapTotal/1024, min(v.SwapUsed, v.SwapTotal)/1024)
	}
	return s
}

// Uptime is /proc/uptime: the level's time, and its CPUs' idle time in it.
func Uptime(v *View) string {
	up := v.Uptime.Seconds()
	busy := float64(v.UserUsec+v.SystemUsec) / 1e6
	idle := max(up*float64(len(v.CPUs))-busy, 0)
	return fmt.Sprintf("%.2f %.2f\n", up, idle)
}

// Loadavg is /proc/loadavg from the level's tasks; the last field, the
// last PID the kernel gave out, is the host's.
func Loadavg(host string, v *View) string {
	last := "0"
	if f := strings.Fields(host); len(f) == 5 {
		last = f[4]
	}
	return fmt.Sprintf("%.2f %.2f %.2f %d/%d %s\n", v.Load[0], v.Load[1], v.Load[2], v.Running, v.Tasks, last)
}

// ticks are USER_HZ, the unit of /proc/stat's times.
const ticks = 100

// Stat is /proc/stat with cpu lines for the reader's CPUs only: the
// cgroup's user and system time, spread over them, and the rest of the
// level's time idle. The other lines are the host's.
func Stat(host string, v *View) string {
	n := uint64(max(len(v.CPUs), 1))
	user, sys := v.UserUsec*ticks/1e6, v.SystemUsec*ticks/1e6
	total := uint64(v.Uptime.Seconds()*ticks) * n
	idle := uint64(0)
	if total > user+sys {
		idle = total - user - sys
	}
	line := func(name string, u, s, i uint64) string {
		return fmt.Sprintf("%s %d 0 %d %d 0 0 0 0 0 0\n", name, u, s, i)
	}
	var b strings.Builder
	b.WriteString(line("cpu ", user, sys, idle))
	for i := uint64(0); i < n; i++ {
		b.WriteString(line(fmt.Sprintf("cpu%d", i), user/n, sys/n, idle/n))
	}
	sc := bufio.NewScanner(strings.NewReader(host))
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "cpu") {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}
