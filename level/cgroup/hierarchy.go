package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/mountinfo"
)

// Membership is one line of /proc/PID/cgroup.
type Membership struct {
	ID          int
	Controllers []string // v1: the controllers or name=; v2: none
	Path        string
}

// ParseProcCgroup parses /proc/PID/cgroup.
func ParseProcCgroup(r io.Reader) ([]Membership, error) {
	var out []Membership
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("malformed /proc cgroup line %q", line)
		}
		id, err := strconv.Atoi(parts[0])
		if err != nil || id < 0 {
			return nil, fmt.Errorf("malformed hierarchy id in /proc cgroup line %q", line)
		}
		m := Membership{ID: id, Path: parts[2]}
		if parts[1] != "" {
			m.Controllers = strings.Split(parts[1], ",")
		}
		if !strings.HasPrefix(m.Path, "/") {
			return nil, fmt.Errorf("malformed cgroup path in /proc cgroup line %q", line)
		}
		out = append(out, m)
	}
	return out, s.Err()
}

// Hierarchy is one mounted cgroup hierarchy and where the process stands in it.
type Hierarchy struct {
	ID          int
	Controllers []string // empty for v2
	Path        string   // the process's cgroup, as /proc/self/cgroup shows it
	Mount       string   // a mount point of this hierarchy
	Root        string   // the cgroup that mount point shows
}

// V2 reports whether this is the unified hierarchy.
func (h Hierarchy) V2() bool { return h.ID == 0 }

// Name is how messages name the hierarchy: "cgroup2", "memory", "name=systemd".
func (h Hierarchy) Name() string {
	if h.V2() {
		return "cgroup2"
	}
	return strings.Join(h.Controllers, ",")
}

// Has reports whether a v1 hierarchy carries controller c.
func (h Hierarchy) Has(c string) bool {
	for _, x := range h.Controllers {
		if x == c {
			return true
		}
	}
	return false
}

// Dir is the directory of cgroup path p in this hierarchy's mount.
func (h Hierarchy) Dir(p string) string {
	rel := strings.TrimPrefix(path.Clean(p), h.Root)
	return path.Join(h.Mount, rel)
}

// Discover matches each line of /proc/self/cgroup with a mount that shows
// the process's cgroup, preferring mounts under /sys/fs/cgroup. Hierarchies
// that are not mounted (the 0:: line on a legacy host) are left out.
func Discover(procCgroup io.Reader, infos []*mountinfo.Info) ([]Hierarchy, error) {
	ms, err := ParseProcCgroup(procCgroup)
	if err != nil {
		return nil, err
	}
	var out []Hierarchy
	for _, m := range ms {
		if m.Path == "/.." || strings.HasPrefix(m.Path, "/../") {
			return nil, fmt.Errorf("this process's %s cgroup %s is outside its cgroup namespace", name(m), m.Path)
		}
		if mnt := findMount(m, infos); mnt != nil {
			out = append(out, Hierarchy{ID: m.ID, Controllers: m.Controllers, Path: m.Path,
				Mount: mnt.Mountpoint, Root: mnt.Root})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) == 0 {
		return nil, fmt.Errorf("no cgroup hierarchy is mounted")
	}
	return out, nil
}

func name(m Membership) string {
	if m.ID == 0 {
		return "cgroup2"
	}
	return strings.Join(m.Controllers, ",")
}

func findMount(m Membership, infos []*mountinfo.Info) *mountinfo.Info {
	var best *mountinfo.Info
	for _, i := range infos {
		if !path.IsAbs(i.Mountpoint) {
			continue // not a place cgroups can be made at
		}
		if m.ID == 0 && i.FSType != "cgroup2" {
			continue
		}
		if m.ID != 0 && (i.FSType != "cgroup" || !sameSet(mounts.Controllers(mounts.V1Data(i.VFSOptions)), m.Controllers)) {
			continue
		}
		// A mount of a cgroup above our namespace root shows a root of
		// /.. and would place levels outside the launcher's cgroup.
		if i.Root == "/.." || strings.HasPrefix(i.Root, "/../") || !mounts.Under(m.Path, i.Root) {
			continue
		}
		// Later mounts at the same place hide earlier ones; a mount under
		// /sys/fs/cgroup beats one elsewhere (a level's own mirror, say).
		if best == nil || mounts.Under(i.Mountpoint, mounts.CgroupRoot) || !mounts.Under(best.Mountpoint, mounts.CgroupRoot) {
			best = i
		}
	}
	return best
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return true
}
