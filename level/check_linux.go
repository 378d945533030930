package level

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// Report is what `cl-unshare check` says about this host (and JSON schema
// of `check --json`).
type Report struct {
	Kernel      string            `json:"kernel"`
	Layout      string            `json:"layout"`
	Hierarchies []string          `json:"hierarchies"`
	Features    map[string]bool   `json:"features"`
	Enforcement string            `json:"enforcement"`
	Bases       map[string]string `json:"level_parents"` // hierarchy -> where levels would go
	// Rootless: the caller is not root, and levels are made as
	// StartRootless makes them; LeftOut are the v1 hierarchies they then
	// do without, each with why.
	Rootless bool     `json:"rootless,omitempty"`
	LeftOut  []string `json:"left_out,omitempty"`
	// Capacity says how many more levels each kernel limit lets start.
	Capacity []Room   `json:"capacity"`
	CanStart bool     `json:"can_start"`
	Problems []string `json:"problems"`
}

// Check reports the cgroup layout, the kernel features cl-unshare uses,
// how "cannot raise its limits" would be enforced, and whether a level can
// be started from here; Problems says why not.
func Check() Report {
	r := Report{Features: map[string]bool{}, Bases: map[string]string{}, Problems: []string{}, Capacity: []Room{}}
	r.checkKernel()
	infos, err := mounts.Current()
	if err != nil {
		r.problem("read mountinfo: %v", err)
		return finish(r)
	}
	r.Features["nsdelegate"] = nsDelegate(infos)
	layout, err := mounts.LayoutFromMounts(infos)
	if err != nil {
		r.problem("cgroup layout: %v", err)
	} else {
		r.Layout = layout.Kind
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		r.problem("%v", err)
		return finish(r)
	}
	defer f.Close()
	hs, err := cgroup.Discover(f, infos)
	if err != nil {
		r.problem("find cgroups: %v", err)
		return finish(r)
	}
	if r.Rootless {
		var kept []cgroup.Hierarchy
		for _, h := range hs {
			if h.V2() {
				kept = append(kept, h)
				if dir := h.Dir(h.Path); !cgroup.Delegated(dir) {
					r.problem("no cgroup is delegated to you: your cgroup %s is not yours to make cgroups in; %s", dir, delegateHint)
				}
				continue
			}
			r.LeftOut = append(r.LeftOut, fmt.Sprintf("%s (a user who is not root may not make cgroups in %s)", h.Name(), h.Dir(h.Path)))
		}
		if len(kept) == 0 {
			r.problem("this host has no cgroup v2 hierarchy, and a user who is not root may not make cgroups in v1 ones; run it as root, or on a host with cgroup v2")
		}
		hs = kept
	}
	v1, v2 := false, false
	for _, h := range hs {
		r.checkHierarchy(h)
		v1, v2 = v1 || !h.V2(), v2 || h.V2()
	}
	r.Enforcement = enforcement(false, r.Features["nsdelegate"], v1, v2) + " (with Config.User: " + enforcement(true, false, false, false) + ")"
	if r.Rootless {
		r.Enforcement = rootlessEnforcement
	}
	if err == nil {
		r.Capacity = capacity(layout, hs, len(infos))
		for _, c := range r.Capacity {
			if c.Levels == 0 {
				r.problem("no room for a level: %s is %d and %d are used, %d a level", c.Limit, c.Max, c.Used, c.PerLevel)
			}
		}
	}
	return finish(r)
}

func (r *Report) problem(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// atLeast reports whether the kernel is release major.minor or later.
func (r *Report) atLeast(major, minor int) bool {
	ma, mi := kernelVersion(r.Kernel)
	return ma > major || ma == major && mi >= minor
}

// checkKernel looks at what the running kernel offers.
func (r *Report) checkKernel() {
	var u unix.Utsname
	_ = unix.Uname(&u)
	r.Kernel = unix.ByteSliceToString(u.Release[:])
	_, err := os.Stat("/proc/self/ns/cgroup")
	r.Features["cgroup_namespaces"] = err == nil
	r.Features["clone_into_cgroup"] = r.atLeast(5, 7)
	r.Features["move_mount_set_group"] = r.atLeast(5, 15)
	r.Features["user_namespaces"] = readInt("/proc/sys/user/max_user_namespaces") > 0
	if !r.Features["cgroup_namespaces"] {
		r.problem("no cgroup namespaces (Linux 4.6+)")
	}
	if !r.Features["move_mount_set_group"] {
		r.problem("kernel %s lacks MOVE_MOUNT_SET_GROUP (Linux 5.15+), which mirrors a level's cgroup mounts", r.Kernel)
	}
	if NeedsRootless() {
		r.Rootless = true
		if !r.Features["user_namespaces"] {
			r.problem("%s", userNSError(unix.EPERM).Error())
		}
	} else if os.Geteuid() != 0 {
		r.problem("not root here: making cgroups and mounts needs CAP_SYS_ADMIN")
	}
}

// checkHierarchy looks at where levels would go in hierarchy h.
func (r *Report) checkHierarchy(h cgroup.Hierarchy) {
	r.Hierarchies = append(r.Hierarchies, h.Name()+" at "+h.Mount)
	base := h.Dir(cgroup.Base(h))
	r.Bases[h.Name()] = base
	if unix.Access(base, unix.W_OK) != nil {
		r.problem("cannot create cgroups in %s (%s)", base, h.Name())
	}
	if !h.V2() {
		return
	}
	_, err := os.Stat(base + "/cgroup.kill")
	r.Features["cgroup_kill"] = err == nil || r.atLeast(5, 14)
	have, _ := cgroup.Fields(base, "cgroup.controllers")
	on, _ := cgroup.Fields(base, "cgroup.subtree_control")
	procs, _ := cgroup.Fields(base, "cgroup.procs")
	_, typed := os.Stat(base + "/cgroup.type")
	if slices.Equal(procs, []string{strconv.Itoa(os.Getpid())}) && cgroup.Delegated(base) {
		return // a launcher alone here steps into a leaf (EnterDelegatedLeaf)
	}
	for _, c := range have {
		if !slices.Contains(on, c) && len(procs) > 0 && typed == nil {
			r.problem("cgroup %s holds processes and does not enable %s for children (cgroup v2 no-internal-process rule): levels here get no %s limits; run cl-unshare in a unit with Delegate=yes or use Config.CgroupParent", base, c, c)
			return
		}
	}
}

func finish(r Report) Report {
	r.CanStart = len(r.Problems) == 0
	return r
}

func kernelVersion(release string) (int, int) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return ma, mi
}

func readInt(p string) int {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
