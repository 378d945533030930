package cgroup

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PerLevel is how many cgroups a level makes in a cgroup2 hierarchy: its
// outer cgroup, the inner one its namespace is rooted at, and the leaf
// its processes start in.
const PerLevel = 3

// Room is what one ancestor's cgroup.max.descendants leaves.
type Room struct {
	Cgroup string `json:"cgroup"`
	Max    int    `json:"max"`  // -1 for "max"
	Used   int    `json:"used"` // nr_descendants
}

// Rooms reads cgroup.max.descendants and nr_descendants of dir and each
// ancestor up to the mount root (the limits above it are not visible),
// the ones that set a limit.
func Rooms(mount, dir string) []Room {
	var out []Room
	for p := dir; ; p = filepath.Dir(p) {
		if v, err := ReadFile(p, "cgroup.max.descendants"); err == nil && v != "max" {
			max, _ := strconv.Atoi(v)
			used, _ := KeyValue(p, "cgroup.stat", "nr_descendants")
			n, _ := strconv.Atoi(used)
			out = append(out, Room{Cgroup: p, Max: max, Used: n})
		}
		if p == mount || !strings.HasPrefix(p, mount+"/") {
			return out
		}
	}
}

// LimitError says a kernel limit on cgroups refused a level's cgroup.
type LimitError struct {
	Dir  string // the cgroup that could not be made
	What string // which limit, and where
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("create cgroup %s: %s; stop some levels, or raise it", e.Dir, e.What)
}

// limitError explains the EAGAIN of a cgroup2 mkdir: an ancestor's
// cgroup.max.descendants or cgroup.max.depth is reached.
func limitError(mount, dir string, err error) error {
	if !errors.Is(err, unix.EAGAIN) {
		return nil
	}
	for _, r := range Rooms(mount, filepath.Dir(dir)) {
		if r.Used >= r.Max {
			return &LimitError{Dir: dir, What: fmt.Sprintf("%s/cgroup.max.descendants is %d and it has %d", r.Cgroup, r.Max, r.Used)}
		}
	}
	return &LimitError{Dir: dir, What: "an ancestor's cgroup.max.depth is reached (cgroup.max.descendants leaves room)"}
}
