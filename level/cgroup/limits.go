package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Limits are the resource limits of a level, in host-neutral units.
// Zero values mean "not set".
type Limits struct {
	Memory     int64     // bytes
	CPUs       float64   // CPU quota in CPUs (1.5 = one and a half CPUs)
	CPUWeight  uint64    // 1..10000, cgroup v2 scale
	CpusetCPUs string    // a CPU list, "0-3,6"
	CpusetMems string    // a memory node list
	PidsMax    int64     // tasks
	Set        []Setting // any other controller file
	// OOMGroup makes an OOM kill in the level kill all of it at once
	// (cgroup2 memory.oom.group, as systemd's OOMPolicy=kill).
	OOMGroup bool
}

// Setting is one --set FILE=VALUE.
type Setting struct {
	File  string
	Value string
}

// Write is one controller file to write on a level's outer cgroup (and
// mirror on the inner one), in one hierarchy.
type Write struct {
	Hierarchy  int // index into the hierarchies given to Plan
	Controller string
	File       string
	Value      string
	Field      string // the Limits field it came from, for messages ("Limits.Memory")
}

// cfsPeriod is the CFS period used for --cpus, the kernel's default.
const cfsPeriod = 100000

// ControllerError says that the host does not offer a controller a limit needs.
type ControllerError struct {
	Field      string
	Controller string
	Offered    string // what the host offers instead
	// Where, for a user who is not root, is the cgroup they were
	// delegated, which lacks the controller.
	Where string
}

func (e *ControllerError) Error() string {
	if e.Where != "" {
		return fmt.Sprintf("%s: the %s controller is not delegated to you: your cgroup %s does not have it (%s would have to offer it)",
			e.Field, e.Controller, e.Where, filepath.Join(filepath.Dir(e.Where), "cgroup.subtree_control"))
	}
	return fmt.Sprintf("%s: the %s controller is not available here (%s)", e.Field, e.Controller, e.Offered)
}

// offered says which controllers cgroup2 offers and which v1
// hierarchies are mounted.
func (p *planner) offered() string {
	var v2, v1 []string
	for c := range p.v2 {
		v2 = append(v2, c)
	}
	sort.Strings(v2)
	for _, h := range p.hs {
		if !h.V2() {
			v1 = append(v1, h.Name())
		}
	}
	var out []string
	if p.index(func(h Hierarchy) bool { return h.V2() }) >= 0 {
		if len(v2) == 0 {
			v2 = []string{"none"}
		}
		out = append(out, "cgroup2 offers "+strings.Join(v2, " "))
	}
	if len(v1) > 0 {
		out = append(out, "the cgroup v1 hierarchies are "+strings.Join(v1, ", "))
	}
	return strings.Join(out, "; ")
}

// otherLayout names the file of the other cgroup version that does what
// file does, for messages: --set memory.max on a v1 memory hierarchy.
var otherLayout = map[string]string{
	"memory.max": "memory.limit_in_bytes", "memory.swap.max": "memory.memsw.limit_in_bytes",
	"memory.low": "memory.soft_limit_in_bytes", "cpu.max": "cpu.cfs_quota_us and cpu.cfs_period_us",
	"cpu.weight": "cpu.shares", "io.weight": "blkio.weight", "io.max": "blkio.throttle.read_bps_device and the like",
	"memory.limit_in_bytes": "memory.max", "memory.memsw.limit_in_bytes": "memory.swap.max",
	"memory.soft_limit_in_bytes": "memory.low", "cpu.cfs_quota_us": "cpu.max", "cpu.cfs_period_us": "cpu.max",
	"cpu.shares": "cpu.weight", "blkio.weight": "io.weight",
}

// Missing explains a controller file that does not exist in dir (a
// cgroup of hierarchy h): which file this layout has instead, or which
// files of that controller it has.
func Missing(h Hierarchy, dir, file string) string {
	kind := "cgroup v1 hierarchy"
	if h.V2() {
		kind = "cgroup2 hierarchy"
	}
	msg := fmt.Sprintf("%s does not exist here: %s is in the %s mounted at %s", file, SettingController(file), kind, h.Mount)
	if o, ok := otherLayout[file]; ok {
		return msg + fmt.Sprintf(", where the file for it is %s", o)
	}
	ents, _ := os.ReadDir(dir)
	var have []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), SettingController(file)+".") && len(have) < 12 {
			have = append(have, e.Name())
		}
	}
	if len(have) > 0 {
		msg += ", whose files here are " + strings.Join(have, " ")
	}
	return msg
}

// Plan turns limits into file writes in the form each host layout needs.
// v2Controllers lists what the unified hierarchy offers (its root's
// cgroup.controllers); a controller bound to v2 is written there, else in
// the v1 hierarchy that carries it.
func Plan(l Limits, hs []Hierarchy, v2Controllers []string) ([]Write, error) {
	p := planner{hs: hs, v2: map[string]bool{}}
	for _, c := range v2Controllers {
		p.v2[c] = true
	}
	if l.Memory > 0 {
		p.add("Limits.Memory", "memory", "memory.max", "memory.limit_in_bytes", strconv.FormatInt(l.Memory, 10))
	}
	if l.CPUs > 0 {
		quota := int64(l.CPUs*cfsPeriod + 0.5)
		if p.onV2("cpu") {
			p.add("Limits.CPUs", "cpu", "cpu.max", "", fmt.Sprintf("%d %d", quota, cfsPeriod))
		} else {
			p.add("Limits.CPUs", "cpu", "", "cpu.cfs_period_us", strconv.Itoa(cfsPeriod))
			p.add("Limits.CPUs", "cpu", "", "cpu.cfs_quota_us", strconv.FormatInt(quota, 10))
		}
	}
	if l.CPUWeight > 0 {
		v := strconv.FormatUint(l.CPUWeight, 10)
		if !p.onV2("cpu") {
			v = strconv.FormatUint(WeightToShares(l.CPUWeight), 10)
		}
		p.add("Limits.CPUWeight", "cpu", "cpu.weight", "cpu.shares", v)
	}
	if l.CpusetCPUs != "" {
		p.add("Limits.CpusetCPUs", "cpuset", "cpuset.cpus", "cpuset.cpus", l.CpusetCPUs)
	}
	if l.CpusetMems != "" {
		p.add("Limits.CpusetMems", "cpuset", "cpuset.mems", "cpuset.mems", l.CpusetMems)
	}
	if l.PidsMax > 0 {
		p.add("Limits.PidsMax", "pids", "pids.max", "pids.max", strconv.FormatInt(l.PidsMax, 10))
	}
	if l.OOMGroup {
		if !p.onV2("memory") && p.index(func(h Hierarchy) bool { return h.Has("memory") }) >= 0 && p.err == nil {
			p.err = fmt.Errorf("Limits.OOMGroup: needs the memory controller on cgroup2 (memory.oom.group); here memory is a cgroup v1 hierarchy, whose OOM killer takes one process at a time")
		}
		p.add("Limits.OOMGroup", "memory", "memory.oom.group", "", "1")
	}
	for _, s := range l.Set {
		c := SettingController(s.File)
		field := "Limits.Set " + s.File
		if c == "cgroup" {
			// Core v2 files (cgroup.max.depth ...) have no controller to find.
			if i := p.index(func(h Hierarchy) bool { return h.V2() }); i >= 0 {
				p.out = append(p.out, Write{Hierarchy: i, Controller: c, File: s.File, Value: s.Value, Field: field})
			} else if p.err == nil {
				p.err = fmt.Errorf("%s: cgroup.* files belong to cgroup v2, which is not mounted here", field)
			}
			continue
		}
		p.add(field, c, s.File, s.File, s.Value)
	}
	return p.out, p.err
}

// SettingController is the controller a controller file belongs to: the
// part of its name before the first dot.
func SettingController(file string) string {
	c, _, _ := strings.Cut(file, ".")
	return c
}

// WeightToShares maps a cgroup v2 cpu.weight (1..10000) onto v1 cpu.shares
// (2..262144), the inverse of the conversion runc and systemd use.
func WeightToShares(w uint64) uint64 {
	return 2 + ((w-1)*262142)/9999
}

type planner struct {
	hs  []Hierarchy
	v2  map[string]bool
	out []Write
	err error
}

func (p *planner) index(f func(Hierarchy) bool) int {
	for i, h := range p.hs {
		if f(h) {
			return i
		}
	}
	return -1
}

func (p *planner) onV2(c string) bool {
	return p.v2[c] && p.index(func(h Hierarchy) bool { return h.V2() }) >= 0
}

// add plans a write of value to v2File on cgroup v2 or v1File on the v1
// hierarchy with controller c; an empty name means the layout has no such file.
func (p *planner) add(field, c, v2File, v1File, value string) {
	var i int
	var file string
	if p.onV2(c) {
		i, file = p.index(func(h Hierarchy) bool { return h.V2() }), v2File
	} else {
		i, file = p.index(func(h Hierarchy) bool { return h.Has(c) }), v1File
	}
	if i < 0 || file == "" {
		if p.err == nil {
			p.err = &ControllerError{Field: field, Controller: c, Offered: p.offered()}
		}
		return
	}
	p.out = append(p.out, Write{Hierarchy: i, Controller: c, File: file, Value: value, Field: field})
}
