package level

import (
	"errors"
	"fmt"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// Room is how many more levels one kernel limit lets start from here.
type Room struct {
	Limit    string `json:"limit"` // "fs.mount-max", or a cgroup's cgroup.max.descendants
	Max      int    `json:"max"`
	Used     int    `json:"used"`
	PerLevel int    `json:"per_level"`
	Levels   int    `json:"levels"`
}

func room(limit string, most, used, per int) Room {
	return Room{Limit: limit, Max: most, Used: used, PerLevel: per, Levels: max(0, (most-used)/per)}
}

// mountsPerLevel is how many mounts a level adds to the namespace it is
// started from: its run directory, its mirror's root, and a copy of each
// cgroup filesystem it mounts.
func mountsPerLevel(l mounts.Layout) int {
	n := 2
	for _, fs := range l.FS {
		if fs.Dir != "" || fs.Type != "tmpfs" {
			n++
		}
	}
	return n
}

func mountRoom(used, per int) Room {
	return room("fs.mount-max", readInt("/proc/sys/fs/mount-max"), used, per)
}

// roomForMounts refuses a start that would take the caller's namespace
// past fs.mount-max: the level's own mounts would fail, but the copies
// the host gets of its mirror by propagation are not counted against it.
// Where the kernel cannot count the mounts cheaply (before Linux 6.8),
// the start learns of the limit from its run directory's mounts instead
// (mountLimit).
func roomForMounts(l mounts.Layout) error {
	n, err := mounts.Count()
	if err != nil {
		return nil
	}
	if r := mountRoom(n, mountsPerLevel(l)); r.Levels == 0 {
		return &LimitError{Room: r}
	}
	return nil
}

// mountLimit explains a mount of the run directory that fs.mount-max
// refused (ENOSPC); other errors come back as they are.
func mountLimit(err error, l mounts.Layout) error {
	if !errors.Is(err, unix.ENOSPC) {
		return err
	}
	n, cerr := mounts.Count()
	if cerr != nil {
		infos, _ := mounts.Current()
		n = len(infos)
	}
	return &LimitError{Room: mountRoom(n, mountsPerLevel(l))}
}

// LimitError says a start would pass a kernel limit.
type LimitError struct{ Room Room }

func (e *LimitError) Error() string {
	r := e.Room
	return fmt.Sprintf("%s is %d and this mount namespace holds %d mounts; a level adds %d: stop some levels, or raise it (sysctl -w fs.mount-max=N)", r.Limit, r.Max, r.Used, r.PerLevel)
}

// capacity says how many more levels each kernel limit lets start here:
// fs.mount-max, and cgroup.max.descendants of the cgroup2 cgroup levels
// go under and its ancestors.
func capacity(layout mounts.Layout, hs []cgroup.Hierarchy, nMounts int) []Room {
	out := []Room{mountRoom(nMounts, mountsPerLevel(layout))}
	for _, h := range hs {
		if !h.V2() {
			continue
		}
		for _, c := range cgroup.Rooms(h.Mount, h.Dir(cgroup.Base(h))) {
			out = append(out, room(c.Cgroup+"/cgroup.max.descendants", c.Max, c.Used, cgroup.PerLevel))
		}
	}
	return out
}
