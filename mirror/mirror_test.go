package mirror

import (
	"slices"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/mountinfo"
)

// The prepared namespace of a --user level "lv" as the kernel lists it:
// its run directory (ID 100) and what the level and a nested level put
// there, junk among it.
const table = `100 50 0:90 / /run/cl-unshare rw - tmpfs cl-unshare rw,size=64k
101 100 0:91 / /run/cl-unshare/cgroup rw - tmpfs tmpfs rw,size=64k,mode=755
102 101 0:30 /lv/level /run/cl-unshare/cgroup/unified rw - cgroup2 cgroup2 rw
103 101 0:31 /lv/level /run/cl-unshare/cgroup/memory rw - cgroup cgroup rw,memory
104 101 0:92 / /run/cl-unshare/cgroup/junk rw - tmpfs junk rw
105 104 0:30 /lv/level /run/cl-unshare/cgroup/junk/under rw - cgroup2 cgroup2 rw
106 102 0:30 /lv/level /run/cl-unshare/cgroup/unified/extra rw - cgroup2 cgroup2 rw
107 100 0:93 / /run/cl-unshare/levels/n2 rw - tmpfs cl-unshare rw,size=64k
108 107 0:94 / /run/cl-unshare/levels/n2/cgroup rw - tmpfs tmpfs rw,size=64k
109 108 0:30 /lv/level/n2/level /run/cl-unshare/levels/n2/cgroup/unified rw - cgroup2 cgroup2 rw
110 100 0:95 / /run/cl-unshare/etc rw - ext4 /dev/vda rw
111 100 0:96 / /run/cl-unshare/levels/bad..name/x rw - tmpfs x rw
112 107 0:97 / /run/cl-unshare/levels/n2/levels/n3 rw - cgroup2 cgroup2 rw
113 101 0:98 / /run/cl-unshare/cgroup rw - tmpfs over rw
`

func TestPlan(t *testing.T) {
	infos, err := mounts.Parse(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	kids := map[int][]*mountinfo.Info{}
	for _, m := range infos {
		kids[m.Parent] = append(kids[m.Parent], m)
	}
	k := &Keeper{c: Config{RunDir: "/run/cl-unshare"}, runID: 100}
	want := k.plan(kids)
	var got []string
	for _, n := range order(want) {
		got = append(got, n.m.Mountpoint)
	}
	// 113 is mounted on 101, at the same place: the visible one counts,
	// and 101's mounts, hidden under it, are not mirrored.
	exp := []string{"/run/cl-unshare/levels/n2", "/run/cl-unshare/levels/n2/cgroup",
		"/run/cl-unshare/levels/n2/cgroup/unified", "/run/cl-unshare/cgroup"}
	if !slices.Equal(got, exp) {
		t.Errorf("plan = %q, want %q", got, exp)
	}
	if n := want[109]; n.parent != 108 || n.rel != "unified" {
		t.Errorf("109 goes below %d at %q", n.parent, n.rel)
	}
	if c := count(kids, 100); c != 13 {
		t.Errorf("count below the run directory = %d, want 13", c)
	}

	// Without the stacked tmpfs, the layout and its cgroup filesystems.
	kids[101] = slices.DeleteFunc(kids[101], func(m *mountinfo.Info) bool { return m.ID == 113 })
	got = nil
	for _, n := range order(k.plan(kids)) {
		got = append(got, n.m.Mountpoint)
	}
	exp = []string{"/run/cl-unshare/cgroup", "/run/cl-unshare/cgroup/unified", "/run/cl-unshare/cgroup/memory",
		"/run/cl-unshare/cgroup/unified/extra", "/run/cl-unshare/levels/n2", "/run/cl-unshare/levels/n2/cgroup",
		"/run/cl-unshare/levels/n2/cgroup/unified"}
	if !slices.Equal(got, exp) {
		t.Errorf("plan = %q, want %q", got, exp)
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
