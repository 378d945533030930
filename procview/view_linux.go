package procview

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// Source computes each reader's View from the cgroup tree, as this
// process (in the host's cgroup namespace) sees it.
type Source struct {
	hs      []cgroup.Hierarchy
	started time.Time
	// hostMem and hostSwap are the machine's, read once.
	hostMem, hostSwap uint64
	root              map[int]string // hierarchy ID -> the level's cgroup there, for its load

	mu    sync.Mutex
	load  [3]float64
	cache map[string]cached // limits up the tree, by the reader's cgroups
}

// cached are the limits of a cgroup and its ancestors, as read at a time:
// limits change seldom, and reading them is most of what a read of the
// view costs, so they are read again only after limitTTL. Use is read on
// every read.
type cached struct {
	at              time.Time
	cpus            []int
	memMax, swapMax uint64
}

// limitTTL is how long a change of a limit may take to show in the view.
const limitTTL = time.Second

// limitsOf returns the cached limits for key, or reads them with get.
func (s *Source) limitsOf(key string, get func() cached) cached {
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && time.Since(c.at) < limitTTL {
		return c
	}
	c = get()
	c.at = time.Now()
	s.mu.Lock()
	if s.cache == nil || len(s.cache) > 4096 {
		s.cache = map[string]cached{} // readers come and go: start afresh
	}
	s.cache[key] = c
	s.mu.Unlock()
	return c
}

// NewSource serves the level whose cgroups root has (hierarchy ID ->
// directory), started at started.
func NewSource(hs []cgroup.Hierarchy, root map[int]string, started time.Time) *Source {
	s := &Source{hs: hs, root: root, started: started}
	s.hostMem, s.hostSwap = hostMemory()
	return s
}

// Parts of a View, which each file needs some of: reading cgroup files is
// most of what a read of the view costs.
const (
	NeedCPUs = 1 << iota
	NeedMemory
	NeedCPUTime
	NeedTasks
)

// ViewOf is the view of process pid: its cgroups, and their ancestors'.
// Only the parts in need are filled in.
func (s *Source) ViewOf(pid int, need int) (*View, error) {
	text := read(fmt.Sprintf("/proc/%d", pid), "cgroup")
	if text == "" {
		return nil, fmt.Errorf("process %d is gone", pid)
	}
	ms, err := cgroup.ParseProcCgroup(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	dirs := map[string]struct{ dir, top string }{} // controller (or "cgroup2") -> its cgroup
	for _, m := range ms {
		for _, h := range s.hs {
			if h.ID != m.ID {
				continue
			}
			d := struct{ dir, top string }{h.Dir(m.Path), h.Mount}
			if h.V2() {
				dirs["cgroup2"] = d
			}
			for _, c := range h.Controllers {
				dirs[c] = d
			}
		}
	}
	v := &View{Uptime: time.Since(s.started)}
	if need&NeedCPUs != 0 {
		key := "cpus:" + dirs["cpuset"].dir + "|" + dirs["cpu"].dir + "|" + dirs["cgroup2"].dir
		v.CPUs = s.limitsOf(key, func() cached { return cached{cpus: s.cpus(dirs)} }).cpus
	}
	if need&NeedMemory != 0 {
		s.memory(dirs, v)
	}
	if need&NeedCPUTime != 0 {
		s.cpuTime(dirs, v)
	}
	if need&NeedTasks != 0 {
		s.mu.Lock()
		v.Load = s.load
		s.mu.Unlock()
		v.Running, v.Tasks = s.tasks()
	}
	return v, nil
}

// at returns the cgroup for controller c: the v1 hierarchy that has it,
// else cgroup2, and whether it is v2.
func at(dirs map[string]struct{ dir, top string }, c string) (string, string, bool) {
	if d, ok := dirs[c]; ok {
		return d.dir, d.top, false
	}
	d, ok := dirs["cgroup2"]
	if !ok {
		return "", "", false
	}
	return d.dir, d.top, true
}

// up calls f on dir and each ancestor up to top, stopping when f says.
func up(dir, top string, f func(dir string) bool) {
	for {
		if !f(dir) || dir == top || !strings.HasPrefix(dir, top) {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// bufs are the buffers files are read into: a read of the view reads
// several, and allocating 16 KiB for each would be most of its garbage.
var bufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// readAll returns a file's text: open, one read, close for the small
// files here (the syscalls are what a read of the view costs;
// os.ReadFile makes five), more reads only for a larger one.
func readAll(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	n, err := unix.Read(fd, buf)
	if err != nil || n <= 0 {
		return ""
	}
	if n < len(buf) {
		return string(buf[:n])
	}
	// Larger than a cgroup file (a big machine's cpuinfo): the rest too.
	out := append([]byte(nil), buf[:n]...)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			return string(out)
		}
		out = append(out, buf[:n]...)
	}
}

// read returns a small file's text, trimmed.
func read(dir, file string) string {
	return strings.TrimSpace(readAll(dir + "/" + file))
}

// statOf returns the value of key in a cgroup's memory.stat or
// cpu.stat text ("key value" lines), 0 if it has none.
func statOf(text, key string) uint64 {
	for rest := text; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if k, val, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseUint(val, 10, 64)
			return n
		}
	}
	return 0
}

// cpus are the reader's CPUs: its effective cpuset, cut to its CPU quota
// rounded up, the smallest quota of it and its ancestors.
func (s *Source) cpus(dirs map[string]struct{ dir, top string }) []int {
	dir, top, v2 := at(dirs, "cpuset")
	var list string
	file := "cpuset.effective_cpus"
	if v2 {
		file = "cpuset.cpus.effective"
	}
	if dir != "" {
		up(dir, top, func(d string) bool { list = read(d, file); return list == "" })
	}
	if list == "" {
		list = read("/sys/devices/system/cpu", "online")
	}
	cpus := parseList(list)
	quota := math.Inf(1)
	if dir, top, v2 := at(dirs, "cpu"); dir != "" {
		up(dir, top, func(d string) bool {
			q, p := 0.0, 0.0
			if v2 {
				f := strings.Fields(read(d, "cpu.max"))
				if len(f) == 2 && f[0] != "max" {
					q, _ = strconv.ParseFloat(f[0], 64)
					p, _ = strconv.ParseFloat(f[1], 64)
				}
			} else {
				q, _ = strconv.ParseFloat(read(d, "cpu.cfs_quota_us"), 64)
				p, _ = strconv.ParseFloat(read(d, "cpu.cfs_period_us"), 64)
			}
			if q > 0 && p > 0 {
				quota = min(quota, q/p)
			}
			return true
		})
	}
	if n := int(math.Ceil(quota)); !math.IsInf(quota, 1) && n < len(cpus) {
		cpus = cpus[:max(n, 1)]
	}
	return cpus
}

// memory fills in the reader's memory and swap limits and use.
func (s *Source) memory(dirs map[string]struct{ dir, top string }, v *View) {
	v.MemTotal, v.SwapTotal = s.hostMem, s.hostSwap
	dir, top, v2 := at(dirs, "memory")
	if dir == "" {
		return
	}
	num := func(s string) (uint64, bool) {
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil
	}
	stats := read(dir, "memory.stat")
	stat := func(key string) uint64 { return statOf(stats, key) }
	if v2 {
		lim := s.limitsOf("mem:"+dir, func() cached {
			c := cached{memMax: ^uint64(0), swapMax: ^uint64(0)}
			up(dir, top, func(d string) bool {
				if n, ok := num(read(d, "memory.max")); ok {
					c.memMax = min(c.memMax, n)
				}
				if n, ok := num(read(d, "memory.swap.max")); ok {
					c.swapMax = min(c.swapMax, n)
				}
				return true
			})
			return c
		})
		v.MemTotal, v.SwapTotal = min(v.MemTotal, lim.memMax), min(v.SwapTotal, lim.swapMax)
		v.MemUsed, _ = num(read(dir, "memory.current"))
		v.SwapUsed, _ = num(read(dir, "memory.swap.current"))
		v.MemCache = stat("file")
		v.Shmem, v.SlabReclaimable, v.SlabUnreclaimable = stat("shmem"), stat("slab_reclaimable"), stat("slab_unreclaimable")
		return
	}
	// v1 keeps the smallest limit of the cgroup and its ancestors for us.
	if n := stat("hierarchical_memory_limit"); n > 0 {
		v.MemTotal = min(v.MemTotal, n)
	}
	if n := stat("hierarchical_memsw_limit"); n > 0 && n > v.MemTotal {
		v.SwapTotal = min(v.SwapTotal, n-v.MemTotal)
	}
	v.MemUsed, _ = num(read(dir, "memory.usage_in_bytes"))
	if sw, ok := num(read(dir, "memory.memsw.usage_in_bytes")); ok && sw > v.MemUsed {
		v.SwapUsed = sw - v.MemUsed
	}
	v.MemCache, v.Shmem = stat("total_cache"), stat("total_shmem")
}

// cpuTime fills in the reader's cgroup's user and system CPU time.
func (s *Source) cpuTime(dirs map[string]struct{ dir, top string }, v *View) {
	if dir, _, v2 := at(dirs, "cpuacct"); dir != "" && !v2 {
		u, _ := strconv.ParseUint(read(dir, "cpuacct.usage_user"), 10, 64)
		k, _ := strconv.ParseUint(read(dir, "cpuacct.usage_sys"), 10, 64)
		v.UserUsec, v.SystemUsec = u/1000, k/1000
		return
	}
	if d, ok := dirs["cgroup2"]; ok {
		stats := read(d.dir, "cpu.stat")
		v.UserUsec, v.SystemUsec = statOf(stats, "user_usec"), statOf(stats, "system_usec")
	}
}

// hostMemory is the host's MemTotal and SwapTotal, in bytes.
func hostMemory() (mem, swap uint64) {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			mem = n * 1024
		case "SwapTotal:":
			swap = n * 1024
		}
	}
	return mem, swap
}

// tasks counts the level's tasks, and those running or in
// uninterruptible sleep (what the kernel's load average counts).
func (s *Source) tasks() (running, total int) {
	var dir string
	for id, d := range s.root {
		if dir == "" || id == 0 {
			dir = d
		}
	}
	if dir == "" {
		return 0, 0
	}
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		list := read(p, "cgroup.threads") // v2; v1 has tasks
		if _, err := os.Stat(filepath.Join(p, "cgroup.threads")); err != nil {
			list = read(p, "tasks")
		}
		for _, t := range strings.Fields(list) {
			total++
			b, _ := os.ReadFile("/proc/" + t + "/stat")
			if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'R' || b[i+2] == 'D') {
				running++
			}
		}
		return nil
	})
	return running, total
}

// Sample folds the level's running tasks into its load averages, as the
// kernel does every 5 s.
func (s *Source) Sample() {
	r, _ := s.tasks()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, mins := range []float64{1, 5, 15} {
		e := math.Exp(-5 / (60 * mins))
		s.load[i] = s.load[i]*e + float64(r)*(1-e)
	}
}

// parseList parses a CPU list such as 0-3,6.
func parseList(s string) []int {
	var out []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out
}
