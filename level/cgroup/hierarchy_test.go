package cgroup

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/mountinfo"
)

// hybridProc and hybridMountinfo are captured on a real hybrid host.
const hybridProc = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/3b205658589c59fa3427aa3657bfefb8
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`

const hybridMountinfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
37 30 0:34 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const unifiedProc = "0::/user.slice/user-1000.slice/session-2.scope\n"

const unifiedMountinfo = `22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

// A Debian-style legacy host: no cgroup2 mounted (the kernel still prints
// a 0:: line), combined cpu,cpuacct and net_cls,net_prio hierarchies, and
// rdma and hugetlb not mounted at all.
const legacyProc = `12:pids:/user.slice/user-1000.slice/session-2.scope
11:cpu,cpuacct:/user.slice
10:memory:/user.slice/user-1000.slice/session-2.scope
9:net_cls,net_prio:/
8:cpuset:/
7:devices:/user.slice
6:freezer:/
5:blkio:/user.slice
4:perf_event:/
3:rdma:/
2:hugetlb:/
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
0::/user.slice/user-1000.slice/session-2.scope
`

const legacyMountinfo = `24 22 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
25 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
27 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
28 24 0:25 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,net_cls,net_prio
29 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
30 24 0:27 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset,noprefix,release_agent=/sbin/x
31 24 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
32 24 0:29 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,freezer
33 24 0:30 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,devices
34 24 0:31 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
35 24 0:32 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,perf_event
`

func parseMounts(t *testing.T, text string) []*mountinfo.Info {
	t.Helper()
	infos, err := mounts.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("mounts.Parse: %v", err)
	}
	return infos
}

func discover(t *testing.T, proc, mi string) []Hierarchy {
	t.Helper()
	hs, err := Discover(strings.NewReader(proc), parseMounts(t, mi))
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return hs
}

func find(hs []Hierarchy, name string) *Hierarchy {
	for i := range hs {
		if hs[i].Name() == name {
			return &hs[i]
		}
	}
	return nil
}

func TestParseProcCgroup(t *testing.T) {
	ms, err := ParseProcCgroup(strings.NewReader(hybridProc))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 10 {
		t.Fatalf("got %d memberships, want 10: %+v", len(ms), ms)
	}
	want := map[int]Membership{
		0: {ID: 9, Controllers: []string{"name=systemd"}, Path: "/"},
		5: {ID: 4, Controllers: []string{"memory"}, Path: "/process_api/3b205658589c59fa3427aa3657bfefb8"},
		8: {ID: 1, Controllers: []string{"cpu"}, Path: "/"},
		9: {ID: 0, Controllers: nil, Path: "/"},
	}
	for i, w := range want {
		if !reflect.DeepEqual(ms[i], w) {
			t.Errorf("line %d = %+v, want %+v", i, ms[i], w)
		}
	}

	ms, err = ParseProcCgroup(strings.NewReader("\n3:cpu,cpuacct:/a:b c\n\n1:name=systemd:/\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantAll := []Membership{
		{ID: 3, Controllers: []string{"cpu", "cpuacct"}, Path: "/a:b c"},
		{ID: 1, Controllers: []string{"name=systemd"}, Path: "/"},
	}
	if !reflect.DeepEqual(ms, wantAll) {
		t.Errorf("got %+v, want %+v", ms, wantAll)
	}

	ms, err = ParseProcCgroup(strings.NewReader(""))
	if err != nil || len(ms) != 0 {
		t.Errorf("empty input: %+v, %v", ms, err)
	}
}

func TestParseProcCgroupMalformed(t *testing.T) {
	for _, line := range []string{
		"garbage",
		"0:/",
		"x:cpu:/",
		":cpu:/",
		"-1:cpu:/",
		"1.5:cpu:/",
		"1:cpu:relative/path",
		"1:cpu:",
		"0::",
	} {
		ms, err := ParseProcCgroup(strings.NewReader("1:cpu:/\n" + line + "\n0::/\n"))
		if err == nil {
			t.Errorf("%q accepted as %+v", line, ms)
			continue
		}
		if !strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), line) {
			t.Errorf("%q: error %q does not call the line malformed and quote it", line, err)
		}
		if ms != nil {
			t.Errorf("%q: memberships %+v returned with the error", line, ms)
		}
	}
}

func TestDiscoverHybrid(t *testing.T) {
	hs := discover(t, hybridProc, hybridMountinfo)
	if len(hs) != 10 {
		t.Fatalf("found %d hierarchies, want 10: %+v", len(hs), hs)
	}
	for i, h := range hs {
		if h.ID != i {
			t.Errorf("hierarchy %d has ID %d, want them sorted by ID", i, h.ID)
		}
	}
	v2 := hs[0]
	if !v2.V2() || v2.Name() != "cgroup2" || v2.Mount != "/sys/fs/cgroup/unified" || v2.Root != "/" || v2.Path != "/" {
		t.Errorf("cgroup2 hierarchy = %+v", v2)
	}
	mem := find(hs, "memory")
	if mem == nil {
		t.Fatal("no memory hierarchy")
	}
	if mem.V2() || mem.ID != 4 || mem.Mount != "/sys/fs/cgroup/memory" || mem.Root != "/" ||
		mem.Path != "/process_api/3b205658589c59fa3427aa3657bfefb8" || !mem.Has("memory") || mem.Has("cpu") {
		t.Errorf("memory hierarchy = %+v", *mem)
	}
	if got, want := mem.Dir(mem.Path), "/sys/fs/cgroup/memory/process_api/3b205658589c59fa3427aa3657bfefb8"; got != want {
		t.Errorf("memory Dir(%q) = %q, want %q", mem.Path, got, want)
	}
	if got, want := mem.Dir(mem.Path+"/web/level"), "/sys/fs/cgroup/memory/process_api/3b205658589c59fa3427aa3657bfefb8/web/level"; got != want {
		t.Errorf("memory Dir of a child = %q, want %q", got, want)
	}
	sd := find(hs, "name=systemd")
	if sd == nil || sd.Mount != "/sys/fs/cgroup/systemd" || sd.ID != 9 {
		t.Errorf("name=systemd hierarchy = %+v", sd)
	}
	if got := v2.Dir("/"); got != "/sys/fs/cgroup/unified" {
		t.Errorf("cgroup2 Dir(/) = %q", got)
	}
}

func TestDiscoverUnified(t *testing.T) {
	hs := discover(t, unifiedProc, unifiedMountinfo)
	if len(hs) != 1 {
		t.Fatalf("found %d hierarchies, want 1: %+v", len(hs), hs)
	}
	h := hs[0]
	if !h.V2() || h.Name() != "cgroup2" || h.Mount != "/sys/fs/cgroup" || h.Root != "/" ||
		h.Path != "/user.slice/user-1000.slice/session-2.scope" || len(h.Controllers) != 0 {
		t.Errorf("hierarchy = %+v", h)
	}
	if got, want := h.Dir(h.Path), "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"; got != want {
		t.Errorf("Dir = %q, want %q", got, want)
	}
}

func TestDiscoverLegacy(t *testing.T) {
	hs := discover(t, legacyProc, legacyMountinfo)
	var names []string
	for _, h := range hs {
		names = append(names, h.Name())
	}
	want := []string{"name=systemd", "perf_event", "blkio", "freezer", "devices", "cpuset",
		"net_cls,net_prio", "memory", "cpu,cpuacct", "pids"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("hierarchies = %q, want %q (sorted by ID; rdma, hugetlb and 0:: are not mounted)", names, want)
	}
	for _, h := range hs {
		if h.V2() {
			t.Errorf("legacy host has a v2 hierarchy: %+v", h)
		}
	}
	cpu := find(hs, "cpu,cpuacct")
	if !cpu.Has("cpu") || !cpu.Has("cpuacct") || cpu.Has("cpuset") || cpu.ID != 11 {
		t.Errorf("cpu,cpuacct hierarchy = %+v", *cpu)
	}
	if got, want := cpu.Dir(cpu.Path), "/sys/fs/cgroup/cpu,cpuacct/user.slice"; got != want {
		t.Errorf("cpu,cpuacct Dir = %q, want %q", got, want)
	}
	net := find(hs, "net_cls,net_prio")
	if net.Mount != "/sys/fs/cgroup/net_cls,net_prio" || !net.Has("net_prio") {
		t.Errorf("net_cls,net_prio hierarchy = %+v", *net)
	}
	// xattr does not keep the systemd hierarchy from matching, nor
	// noprefix and release_agent= the cpuset one.
	if sd := find(hs, "name=systemd"); sd.Mount != "/sys/fs/cgroup/systemd" ||
		sd.Dir(sd.Path) != "/sys/fs/cgroup/systemd/user.slice/user-1000.slice/session-2.scope" {
		t.Errorf("name=systemd hierarchy = %+v", *sd)
	}
	if cs := find(hs, "cpuset"); cs.Mount != "/sys/fs/cgroup/cpuset" {
		t.Errorf("cpuset hierarchy = %+v", *cs)
	}
}

func TestDiscoverControllerOrder(t *testing.T) {
	// The controllers of a hierarchy are a set, whatever order they come in.
	hs := discover(t, "3:cpu,cpuacct:/x\n", "27 24 0:24 / /mnt/cg rw - cgroup cgroup rw,cpuacct,cpu\n")
	if len(hs) != 1 || hs[0].Mount != "/mnt/cg" {
		t.Errorf("hierarchies = %+v, want the cpuacct,cpu mount", hs)
	}
	// A mount with one controller more or less is another hierarchy.
	for _, opts := range []string{"rw,cpu", "rw,cpu,cpuacct,cpuset", "rw,cpuacct,name=cpu"} {
		_, err := Discover(strings.NewReader("3:cpu,cpuacct:/x\n"), parseMounts(t, "27 24 0:24 / /mnt/cg rw - cgroup cgroup "+opts+"\n"))
		if err == nil {
			t.Errorf("cpu,cpuacct matched a mount with %s", opts)
		}
	}
	// A v1 line never matches cgroup2 and the 0:: line never a v1 mount.
	_, err := Discover(strings.NewReader("0::/\n"), parseMounts(t, "27 24 0:24 / /mnt/cg rw - cgroup cgroup rw,memory\n"))
	if err == nil {
		t.Error("0:: matched a v1 mount")
	}
	_, err = Discover(strings.NewReader("4:memory:/\n"), parseMounts(t, "25 22 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"))
	if err == nil {
		t.Error("memory matched a cgroup2 mount")
	}
}

func TestDiscoverRoots(t *testing.T) {
	proc := "4:memory:/user.slice/web\n0::/user.slice/web\n"

	// A container-style mount showing only a subtree that does not contain
	// the process's cgroup is not chosen; one showing everything is.
	mi := `29 24 0:26 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
30 24 0:26 /user /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
50 1 0:26 / /mnt/memory rw - cgroup cgroup rw,memory
51 1 0:22 /system.slice /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
`
	hs := discover(t, proc, mi)
	if len(hs) != 1 {
		t.Fatalf("hierarchies = %+v, want only memory (no cgroup2 mount shows /user.slice/web)", hs)
	}
	if hs[0].Mount != "/mnt/memory" || hs[0].Root != "/" {
		t.Errorf("memory hierarchy = %+v, want the mount at /mnt/memory", hs[0])
	}

	// A mount rooted at an ancestor of the process's cgroup.
	hs = discover(t, proc, "29 24 0:26 /user.slice /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
	if len(hs) != 1 || hs[0].Root != "/user.slice" {
		t.Fatalf("hierarchies = %+v", hs)
	}
	if got, want := hs[0].Dir(hs[0].Path), "/sys/fs/cgroup/memory/web"; got != want {
		t.Errorf("Dir = %q, want %q", got, want)
	}
	if got, want := hs[0].Dir("/user.slice/web/x/level"), "/sys/fs/cgroup/memory/web/x/level"; got != want {
		t.Errorf("Dir = %q, want %q", got, want)
	}
	if got, want := hs[0].Dir("/user.slice"), "/sys/fs/cgroup/memory"; got != want {
		t.Errorf("Dir = %q, want %q", got, want)
	}

	// Nothing shows the process's cgroup: not mounted.
	_, err := Discover(strings.NewReader(proc), parseMounts(t, "29 24 0:26 /docker /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"))
	if err == nil || !strings.Contains(err.Error(), "no cgroup hierarchy is mounted") {
		t.Errorf("err = %v, want \"no cgroup hierarchy is mounted\"", err)
	}
}

func TestDiscoverPrefersSysFsCgroup(t *testing.T) {
	sys := "34 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
	mirror := "90 80 0:31 / /run/cl-unshare/levels/web/cgroup/memory rw - cgroup cgroup rw,memory\n"
	other := "91 1 0:31 / /mnt/memory rw - cgroup cgroup rw,memory\n"
	proc := "4:memory:/a\n"
	for _, mi := range []string{sys + mirror, mirror + sys, other + sys + mirror, mirror + sys + other} {
		hs := discover(t, proc, mi)
		if len(hs) != 1 || hs[0].Mount != "/sys/fs/cgroup/memory" {
			t.Errorf("with mounts\n%schose %+v, want /sys/fs/cgroup/memory", mi, hs)
		}
	}
	// With no mount under /sys/fs/cgroup, another one does.
	hs := discover(t, proc, mirror)
	if len(hs) != 1 || hs[0].Mount != "/run/cl-unshare/levels/web/cgroup/memory" {
		t.Errorf("chose %+v, want the mirror", hs)
	}
	// Of two mounts elsewhere, the later one counts.
	hs = discover(t, proc, mirror+other)
	if len(hs) != 1 || hs[0].Mount != "/mnt/memory" {
		t.Errorf("chose %+v, want the later mount, /mnt/memory", hs)
	}
	// Of two mounts at the same place, the later one hides the earlier.
	hs = discover(t, proc, sys+"35 30 0:31 /a /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
	if len(hs) != 1 || hs[0].Root != "/a" {
		t.Errorf("chose %+v, want the later mount (root /a)", hs)
	}
}

func TestDiscoverOutsideNamespace(t *testing.T) {
	for _, proc := range []string{
		"4:memory:/..\n",
		"4:memory:/../x\n",
		"4:memory:/../../user.slice\n",
		"0::/../sibling\n",
	} {
		mi := hybridMountinfo
		hs, err := Discover(strings.NewReader(proc), parseMounts(t, mi))
		if err == nil {
			t.Errorf("%q: got %+v, want an error", proc, hs)
			continue
		}
		if !strings.Contains(err.Error(), "outside its cgroup namespace") {
			t.Errorf("%q: error %q, want \"outside its cgroup namespace\"", proc, err)
		}
	}
	if !strings.Contains(func() string {
		_, err := Discover(strings.NewReader("0::/../x\n"), parseMounts(t, hybridMountinfo))
		return err.Error()
	}(), "cgroup2 cgroup /../x") {
		t.Error("error for a v2 path does not name the cgroup2 hierarchy and path")
	}
}

func TestDiscoverDotDotName(t *testing.T) {
	hs, err := Discover(strings.NewReader("4:memory:/..foo\n"), parseMounts(t, hybridMountinfo))
	if err != nil {
		t.Fatalf("a cgroup named ..foo: %v", err)
	}
	if len(hs) != 1 || hs[0].Dir(hs[0].Path) != "/sys/fs/cgroup/memory/..foo" {
		t.Errorf("got %+v", hs)
	}
}

// cgroupnsMountinfo is hybridMountinfo as `unshare -C` shows it on the same
// host: the memory hierarchy's mount shows a cgroup above the namespace
// root, while /proc/self/cgroup says "/" everywhere.
const cgroupnsMountinfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 /../.. /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func TestDiscoverMountAboveNamespaceRoot(t *testing.T) {
	hs, err := Discover(strings.NewReader("4:memory:/\n1:cpu:/\n0::/\n"), parseMounts(t, cgroupnsMountinfo))
	if err != nil {
		// Refusing is fine; silently misplacing the level is not.
		return
	}
	for _, h := range hs {
		if h.Has("memory") {
			t.Errorf("memory cgroup \"/\" resolved to %s via a mount rooted at %q, which shows a cgroup above the namespace root",
				h.Dir(h.Path), h.Root)
		}
	}
}

func TestDiscoverErrors(t *testing.T) {
	if _, err := Discover(strings.NewReader("bad line\n"), parseMounts(t, hybridMountinfo)); err == nil ||
		!strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed /proc/self/cgroup: err = %v", err)
	}
	if _, err := Discover(strings.NewReader(hybridProc), nil); err == nil ||
		!strings.Contains(err.Error(), "no cgroup hierarchy is mounted") {
		t.Errorf("no mounts: err = %v", err)
	}
	if _, err := Discover(strings.NewReader(""), parseMounts(t, hybridMountinfo)); err == nil {
		t.Error("empty /proc/self/cgroup: no error")
	}
}

func TestHierarchyNames(t *testing.T) {
	for _, c := range []struct {
		h    Hierarchy
		name string
		v2   bool
	}{
		{Hierarchy{ID: 0}, "cgroup2", true},
		{Hierarchy{ID: 4, Controllers: []string{"memory"}}, "memory", false},
		{Hierarchy{ID: 3, Controllers: []string{"cpu", "cpuacct"}}, "cpu,cpuacct", false},
		{Hierarchy{ID: 1, Controllers: []string{"name=systemd"}}, "name=systemd", false},
	} {
		if got := c.h.Name(); got != c.name {
			t.Errorf("Name() = %q, want %q", got, c.name)
		}
		if got := c.h.V2(); got != c.v2 {
			t.Errorf("%s: V2() = %v, want %v", c.name, got, c.v2)
		}
	}
	h := Hierarchy{ID: 3, Controllers: []string{"cpu", "cpuacct"}}
	if !h.Has("cpu") || !h.Has("cpuacct") || h.Has("cpuset") || h.Has("cpu,cpuacct") || h.Has("") {
		t.Error("Has is wrong for cpu,cpuacct")
	}
	if (Hierarchy{ID: 0}).Has("memory") {
		t.Error("the v2 hierarchy Has a v1 controller")
	}
}
