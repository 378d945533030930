package level

import "testing"

// A nested record's cgroup path must lie strictly below the hierarchy's
// mount point, written plainly: "//" or ".." would let a level name a
// cgroup outside its own (a sibling's, the host's root).
func TestBelowMount(t *testing.T) {
	for _, c := range []struct {
		p, mnt, want string
		ok           bool
	}{
		{"/sys/fs/cgroup/unified/b", "/sys/fs/cgroup/unified", "b", true},
		{"/sys/fs/cgroup/b/c", "/sys/fs/cgroup", "b/c", true},
		{"/sys/fs/cgroup/memory/x/level", "/sys/fs/cgroup/memory", "x/level", true},
		{"//sys/fs/cgroup/unified/rtV", "/sys/fs/cgroup/unified", "", false},
		{"/sys/fs/cgroup/unified/../unified/x", "/sys/fs/cgroup/unified", "", false},
		{"/sys/fs/cgroup/unified/./x", "/sys/fs/cgroup/unified", "", false},
		{"/sys/fs/cgroup/unified/x/", "/sys/fs/cgroup/unified", "", false},
		{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified", "", false},
		{"/sys/fs/cgroup/unifiedx/y", "/sys/fs/cgroup/unified", "", false},
		{"sys/fs/cgroup/unified/y", "/sys/fs/cgroup/unified", "", false},
		{"/sys/fs/cgroup/memory/y", "/sys/fs/cgroup/unified", "", false},
	} {
		got, err := belowMount(c.p, c.mnt)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("belowMount(%q, %q) = %q, %v; want %q, ok=%v", c.p, c.mnt, got, err, c.want, c.ok)
		}
	}
}

func TestParseStatus(t *testing.T) {
	st := parseStatus("Name:\tsh\nPPid:\t812\nNSpid:\t4242\t17\t1\nNSpgid:\t4242\n")
	if st.ppid != 812 || len(st.nspid) != 3 || st.nspid[0] != 4242 || st.nspid[2] != 1 {
		t.Errorf("parseStatus: %+v", st)
	}
	if st := parseStatus("garbage"); st.ppid != 0 || st.nspid != nil {
		t.Errorf("parseStatus(garbage) = %+v", st)
	}
}

// The root a --user level's exec runs as comes from its recorded maps.
func TestUserNSRoot(t *testing.T) {
	u := &UserNS{UIDMap: IDMap{0, 100000, 65536}, GIDMap: IDMap{0, 200000, 10}}
	if r := u.root(); r.UID != 100000 || r.GID != 200000 {
		t.Errorf("root() = %+v", r)
	}
	for _, c := range []struct {
		uid, gid int
		want     bool
	}{{100000, 200000, true}, {165535, 200009, true}, {165536, 200000, false}, {0, 0, false}, {100000, 200010, false}} {
		if got := u.holds(c.uid, c.gid); got != c.want {
			t.Errorf("holds(%d, %d) = %v", c.uid, c.gid, got)
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
