package mirror

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/mountinfo"
)

// The prepared namespace of a --user level "lv" as the kernel lists it:
// its run directory (ID 100), its mirror at /sys/fs/cgroup (ID 200), and
// what the level and a nested level put there, junk among it.
const table = `100 50 0:90 / /run/cl-unshare rw - tmpfs cl-unshare rw,size=64k
200 60 0:91 / /sys/fs/cgroup rw - tmpfs cl-unshare rw,size=64k,mode=755
202 200 0:30 /lv/level /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
203 200 0:31 /lv/level /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
204 200 0:92 / /sys/fs/cgroup/junk rw - tmpfs junk rw
205 204 0:30 /lv/level /sys/fs/cgroup/junk/under rw - cgroup2 cgroup2 rw
206 202 0:30 /lv/level /sys/fs/cgroup/unified/extra rw - cgroup2 cgroup2 rw
101 100 0:93 / /run/cl-unshare/cgroup rw - cgroup2 cgroup2 rw
107 100 0:93 / /run/cl-unshare/levels/n2 rw - tmpfs cl-unshare rw,size=64k
108 107 0:94 / /run/cl-unshare/levels/n2/cgroup rw - tmpfs cl-unshare rw,size=64k
109 108 0:30 /lv/level/n2/level /run/cl-unshare/levels/n2/cgroup/unified rw - cgroup2 cgroup2 rw
110 100 0:95 / /run/cl-unshare/etc rw - ext4 /dev/vda rw
111 100 0:96 / /run/cl-unshare/levels/bad..name/x rw - tmpfs x rw
112 107 0:97 / /run/cl-unshare/levels/n2/levels/n3 rw - cgroup2 cgroup2 rw
`

func plan(t *testing.T, text string) ([]string, map[int]node, map[int][]*mountinfo.Info) {
	t.Helper()
	infos, err := mounts.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	kids := map[int][]*mountinfo.Info{}
	for _, m := range infos {
		kids[m.Parent] = append(kids[m.Parent], m)
	}
	k := &Keeper{c: Config{RunDir: "/run/cl-unshare"}, runID: 100, cgID: 200}
	want := k.plan(kids)
	var got []string
	for _, n := range order(want) {
		got = append(got, n.m.Mountpoint)
	}
	return got, want, kids
}

func TestPlan(t *testing.T) {
	// 101, a cgroupfs where the top run directory's mirror used to be, is
	// not the mirror: that is the level's /sys/fs/cgroup.
	got, want, kids := plan(t, table)
	exp := []string{"/run/cl-unshare/levels/n2", "/run/cl-unshare/levels/n2/cgroup", "/run/cl-unshare/levels/n2/cgroup/unified",
		"/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified/extra"}
	if !slices.Equal(got, exp) {
		t.Errorf("plan = %q, want %q", got, exp)
	}
	if n := want[109]; n.parent != 108 || n.rel != "unified" {
		t.Errorf("109 goes below %d at %q", n.parent, n.rel)
	}
	if n := want[202]; n.parent != onHostCg || n.rel != "unified" {
		t.Errorf("202 goes below %d at %q", n.parent, n.rel)
	}
	if c := count(kids, 100) + count(kids, 200); c != 12 {
		t.Errorf("count below the run directory and mirror = %d, want 12", c)
	}

	// A unified layout: cgroup2 on the mirror's root goes onto the host's.
	got, want, _ = plan(t, "100 50 0:90 / /run/cl-unshare rw - tmpfs cl-unshare rw\n"+
		"200 60 0:91 / /sys/fs/cgroup rw - tmpfs cl-unshare rw\n"+
		"201 200 0:30 /lv/level /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"+
		"202 201 0:30 /lv/level /sys/fs/cgroup/extra rw - cgroup2 cgroup2 rw\n")
	if !slices.Equal(got, []string{"/sys/fs/cgroup", "/sys/fs/cgroup/extra"}) || want[201].parent != onHostCg || want[201].rel != "" || want[202].parent != 201 {
		t.Errorf("unified plan = %q, %+v", got, want)
	}
}

func TestRelativeAndNames(t *testing.T) {
	for _, c := range []struct {
		dir, p, want string
		ok           bool
	}{
		{"/run/x", "/run/x/cgroup", "cgroup", true},
		{"/run/x", "/run/x/levels/a/cgroup", "levels/a/cgroup", true},
		{"/run/x", "/run/x", "", false},
		{"/run/x", "/run/xy/a", "", false},
		{"/run/x", "/run/x/../y", "", false},
		{"/run/x", "//run/x/a", "", false},
	} {
		if got, ok := relative(c.dir, c.p); got != c.want || ok != c.ok {
			t.Errorf("relative(%q, %q) = %q, %v", c.dir, c.p, got, ok)
		}
	}
	for rel, want := range map[string]bool{"levels/a": true, "levels/web-1.x_y": true, "levels/": false, "levels/a/b": false,
		"levels/.a": false, "levels/-a": false, "levels/a b": false, "cgroup": false, "levels/" + strings.Repeat("x", 65): false} {
		if got := nestedName(rel); got != want {
			t.Errorf("nestedName(%q) = %v", rel, got)
		}
	}
}

// The prepared namespace's mount table, which the level fills: whatever
// it holds, only mounts below the run directory and
// /sys/fs/cgroup are picked, each at a plain path below its parent.
func FuzzPlan(f *testing.F) {
	f.Add(table)
	f.Add("100 50 0:90 / /run/cl-unshare rw - tmpfs x rw\n101 100 0:91 / /run/cl-unshare/levels/a/../../x rw - tmpfs x rw\n")
	f.Add("100 100 0:90 / /run/cl-unshare rw - tmpfs x rw\n200 200 0:1 / /sys/fs/cgroup rw - cgroup2 x rw\n")
	f.Fuzz(func(t *testing.T, text string) {
		infos, err := mounts.Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		kids := map[int][]*mountinfo.Info{}
		for _, m := range infos {
			kids[m.Parent] = append(kids[m.Parent], m)
		}
		k := &Keeper{c: Config{RunDir: "/run/cl-unshare"}, runID: 100, cgID: 200}
		for _, n := range order(k.plan(kids)) {
			if !mounts.Under(n.m.Mountpoint, "/run/cl-unshare") && !mounts.Under(n.m.Mountpoint, mounts.CgroupRoot) {
				t.Errorf("planned %s, outside the level's mounts", n.m.Mountpoint)
			}
			if strings.Contains("/"+n.rel+"/", "/../") || strings.HasPrefix(n.rel, "/") {
				t.Errorf("planned %s at %q", n.m.Mountpoint, n.rel)
			}
		}
		_ = count(kids, 100)
	})
}

// The host takes a first burst of Max changes, then Rate a second.
func TestSpend(t *testing.T) {
	k := &Keeper{c: Config{Max: 10}}
	n := 0
	for i := 0; i < 50; i++ {
		if k.spend() {
			n++
		}
	}
	if n != 10 || !k.pending {
		t.Errorf("spent %d of a burst of 10 (pending %v)", n, k.pending)
	}
	k.filled = k.filled.Add(-100 * time.Millisecond) // 100 ms later: Rate/10 more
	n = 0
	for i := 0; i < 50; i++ {
		if k.spend() {
			n++
		}
	}
	if n != Rate/10 {
		t.Errorf("after 100 ms, %d more, want %d", n, Rate/10)
	}
}
