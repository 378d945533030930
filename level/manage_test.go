package level

import "testing"

// A nested supervisor records paths in its level's view; the caller maps
// them through the level's mirror and run directory, level by level.
func TestViewNested(t *testing.T) {
	top := view{}.nested("/run/cl-unshare/levels/a", "/run/cl-unshare")
	deeper := top.nested("/run/cl-unshare/levels/b", "/run/cl-unshare")
	for _, c := range []struct {
		v        view
		in, want string
	}{
		{top, "/sys/fs/cgroup/unified/b", "/run/cl-unshare/levels/a/cgroup/unified/b"},
		{top, "/run/cl-unshare/levels/b", "/run/cl-unshare/levels/a/levels/b"},
		{top, "/sys/fs/cgroupx", "/sys/fs/cgroupx"},
		{deeper, "/sys/fs/cgroup/memory/c/level", "/run/cl-unshare/levels/a/levels/b/cgroup/memory/c/level"},
		{deeper, "/run/cl-unshare/levels/c", "/run/cl-unshare/levels/a/levels/b/levels/c"},
		{view{}, "/sys/fs/cgroup/x", "/sys/fs/cgroup/x"},
	} {
		if got := c.v.path(c.in); got != c.want {
			t.Errorf("path(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestKernelVersion(t *testing.T) {
	for in, want := range map[string][2]int{"6.18.44-fc-v782": {6, 18}, "5.15.0-91-generic": {5, 15}, "6.1.0-56-amd64": {6, 1}, "4.19+": {4, 19}, "x": {0, 0}} {
		if ma, mi := kernelVersion(in); ma != want[0] || mi != want[1] {
			t.Errorf("kernelVersion(%q) = %d.%d", in, ma, mi)
		}
	}
}

func TestProcAlive(t *testing.T) {
	me := self()
	if !me.Alive() {
		t.Fatalf("this process %+v is not alive", me)
	}
	if (Proc{PID: me.PID, Start: me.Start + 1}).Alive() {
		t.Error("a PID with another start time counts as alive")
	}
	if (Proc{}).Alive() {
		t.Error("PID 0 counts as alive")
	}
}
