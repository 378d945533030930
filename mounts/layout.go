package mounts

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// CgroupRoot is where every layout we know of puts its cgroup filesystems.
const CgroupRoot = "/sys/fs/cgroup"

// Layout kinds, named as systemd names them.
const (
	Unified = "unified" // cgroup2 mounted at /sys/fs/cgroup
	Hybrid  = "hybrid"  // tmpfs with v1 hierarchies plus a cgroup2 mount
	Legacy  = "legacy"  // tmpfs with v1 hierarchies only
)

// FS is one filesystem of a cgroup layout, relative to CgroupRoot.
type FS struct {
	// Dir is the mount point relative to CgroupRoot; "" is CgroupRoot itself.
	Dir string `json:"dir"`
	// Type is "tmpfs", "cgroup" or "cgroup2".
	Type string `json:"type"`
	// Data is the option string to mount it with: the controllers and the
	// name= of a v1 hierarchy, mode= for the tmpfs, nothing for cgroup2.
	Data string `json:"data,omitempty"`
}

// Symlink is a link directly under CgroupRoot, such as cpu -> cpu,cpuacct.
type Symlink struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

// Layout is the shape of a host's /sys/fs/cgroup: enough to rebuild it,
// rooted elsewhere, inside a level.
type Layout struct {
	Kind     string    `json:"kind"`
	FS       []FS      `json:"fs"`
	Symlinks []Symlink `json:"symlinks,omitempty"`
}

// v1Options are the superblock options that select a v1 hierarchy or
// change how it looks; anything else (release_agent=, rw) must not be copied.
var v1Options = map[string]bool{"xattr": true, "noprefix": true, "clone_children": true,
	"cpuset_v2_mode": true, "favordynmods": true, "none": true}

// LayoutFromMounts derives the cgroup layout from a mount table. Only the
// mounts visible at CgroupRoot count: a mount stacked over another at the
// same path hides it, so the last one wins, as the kernel resolves paths.
func LayoutFromMounts(infos []*mountinfo.Info) (Layout, error) {
	var root *mountinfo.Info
	for _, m := range infos {
		if path.Clean(m.Mountpoint) == CgroupRoot {
			root = m
		}
	}
	if root == nil {
		return Layout{}, fmt.Errorf("nothing is mounted at %s", CgroupRoot)
	}
	// Only mounts on the visible root count: ones on a tmpfs that a later
	// mount hides are not part of the layout.
	top := map[string]*mountinfo.Info{"": root}
	for _, m := range infos {
		rel, ok := relativeTo(CgroupRoot, m.Mountpoint)
		if ok && rel != "" && !strings.Contains(rel, "/") && m.Parent == root.ID {
			top[rel] = m
		}
	}
	switch root.FSType {
	case "cgroup2":
		return Layout{Kind: Unified, FS: []FS{{Type: "cgroup2"}}}, nil
	case "tmpfs":
	default:
		return Layout{}, fmt.Errorf("%s is %s, not tmpfs or cgroup2", CgroupRoot, root.FSType)
	}
	l := Layout{Kind: Legacy, FS: []FS{{Type: "tmpfs", Data: LayoutRootData}}}
	var dirs []string
	for rel := range top {
		if rel != "" {
			dirs = append(dirs, rel)
		}
	}
	sort.Strings(dirs)
	for _, rel := range dirs {
		m := top[rel]
		switch m.FSType {
		case "cgroup2":
			l.Kind = Hybrid
			l.FS = append(l.FS, FS{Dir: rel, Type: "cgroup2"})
		case "cgroup":
			l.FS = append(l.FS, FS{Dir: rel, Type: "cgroup", Data: V1Data(m.VFSOptions)})
		}
	}
	if len(l.FS) == 1 {
		return Layout{}, fmt.Errorf("%s is a tmpfs with no cgroup hierarchy mounted in it", CgroupRoot)
	}
	return l, nil
}

// V1Data keeps, from a v1 cgroup superblock's options, the ones that name
// the hierarchy (controllers, name=) and shape it.
func V1Data(superOpts string) string {
	var keep []string
	for _, o := range strings.Split(superOpts, ",") {
		switch {
		case o == "" || o == "rw" || o == "ro":
		case strings.HasPrefix(o, "name="), v1Options[o]:
			keep = append(keep, o)
		case strings.Contains(o, "="):
			// release_agent= and the like are machine policy, not layout.
		default:
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ",")
}

// Controllers returns the controllers and name= entries of a v1 option
// string, in order: what identifies the hierarchy.
func Controllers(data string) []string {
	var out []string
	for _, o := range strings.Split(data, ",") {
		if o != "" && !v1Options[o] {
			out = append(out, o)
		}
	}
	return out
}

// Parse reads mountinfo text.
func Parse(r io.Reader) ([]*mountinfo.Info, error) {
	return mountinfo.GetMountsFromReader(r, nil)
}

// Below returns p relative to dir if p is strictly below it and written
// plainly (absolute, no "//", ".", ".." or trailing "/"): for paths that
// came from somewhere untrusted, where Under would clean them first.
func Below(dir, p string) (string, bool) {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return "", false
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(dir, "/")+"/")
	if !ok || rel == "" {
		return "", false
	}
	return rel, true
}

// Under reports whether p is dir or below it.
func Under(p, dir string) bool {
	_, ok := relativeTo(dir, p)
	return ok
}

func relativeTo(dir, p string) (string, bool) {
	dir, p = path.Clean(dir), path.Clean(p)
	if p == dir {
		return "", true
	}
	if dir == "/" {
		return p[1:], true
	}
	if strings.HasPrefix(p, dir+"/") {
		return p[len(dir)+1:], true
	}
	return "", false
}
