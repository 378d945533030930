package mounts

import (
	"reflect"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// hybridMountinfo is the cgroup part of a real hybrid host's mountinfo.
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

// unifiedMountinfo is a systemd host booted with cgroup v2 only.
const unifiedMountinfo = `22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
23 22 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:3 - securityfs securityfs rw
25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 22 0:23 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:5 - pstore pstore rw
`

// legacyMountinfo is a Debian-style legacy host: combined cpu,cpuacct and
// net_cls,net_prio hierarchies, no cgroup2.
const legacyMountinfo = `22 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
24 22 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
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

func parse(t *testing.T, text string) []*mountinfo.Info {
	t.Helper()
	infos, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return infos
}

func layoutOf(t *testing.T, text string) Layout {
	t.Helper()
	l, err := LayoutFromMounts(parse(t, text))
	if err != nil {
		t.Fatalf("LayoutFromMounts: %v", err)
	}
	return l
}

func checkLayout(t *testing.T, got, want Layout) {
	t.Helper()
	if got.Kind != want.Kind {
		t.Errorf("Kind = %q, want %q", got.Kind, want.Kind)
	}
	if !reflect.DeepEqual(got.FS, want.FS) {
		t.Errorf("FS =\n%s\nwant\n%s", fsString(got.FS), fsString(want.FS))
	}
	if len(got.Symlinks) != 0 {
		t.Errorf("Symlinks = %v, want none (mountinfo has no symlinks)", got.Symlinks)
	}
}

func fsString(fs []FS) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("\t{" + f.Dir + " " + f.Type + " " + f.Data + "}\n")
	}
	return b.String()
}

func TestParse(t *testing.T) {
	infos := parse(t, hybridMountinfo)
	if len(infos) != 11 {
		t.Fatalf("Parse found %d mounts, want 11", len(infos))
	}
	m := infos[4]
	if m.Mountpoint != "/sys/fs/cgroup/memory" || m.FSType != "cgroup" || m.VFSOptions != "rw,memory" ||
		m.Root != "/" || m.ID != 34 || m.Parent != 30 {
		t.Errorf("memory mount parsed as %+v", *m)
	}
	if _, err := Parse(strings.NewReader("this is not mountinfo\n")); err == nil {
		t.Error("Parse accepted garbage")
	}
}

func TestLayoutHybrid(t *testing.T) {
	checkLayout(t, layoutOf(t, hybridMountinfo), Layout{Kind: Hybrid, FS: []FS{
		{Dir: "", Type: "tmpfs", Data: LayoutRootData},
		{Dir: "blkio", Type: "cgroup", Data: "blkio"},
		{Dir: "cpu", Type: "cgroup", Data: "cpu"},
		{Dir: "cpuacct", Type: "cgroup", Data: "cpuacct"},
		{Dir: "cpuset", Type: "cgroup", Data: "cpuset"},
		{Dir: "devices", Type: "cgroup", Data: "devices"},
		{Dir: "freezer", Type: "cgroup", Data: "freezer"},
		{Dir: "memory", Type: "cgroup", Data: "memory"},
		{Dir: "pids", Type: "cgroup", Data: "pids"},
		{Dir: "systemd", Type: "cgroup", Data: "name=systemd"},
		{Dir: "unified", Type: "cgroup2"},
	}})
}

func TestLayoutUnified(t *testing.T) {
	checkLayout(t, layoutOf(t, unifiedMountinfo), Layout{Kind: Unified, FS: []FS{{Type: "cgroup2"}}})
}

func TestLayoutLegacy(t *testing.T) {
	checkLayout(t, layoutOf(t, legacyMountinfo), Layout{Kind: Legacy, FS: []FS{
		{Dir: "", Type: "tmpfs", Data: LayoutRootData},
		{Dir: "blkio", Type: "cgroup", Data: "blkio"},
		{Dir: "cpu,cpuacct", Type: "cgroup", Data: "cpu,cpuacct"},
		{Dir: "cpuset", Type: "cgroup", Data: "cpuset,noprefix"},
		{Dir: "devices", Type: "cgroup", Data: "devices"},
		{Dir: "freezer", Type: "cgroup", Data: "freezer"},
		{Dir: "memory", Type: "cgroup", Data: "memory"},
		{Dir: "net_cls,net_prio", Type: "cgroup", Data: "net_cls,net_prio"},
		{Dir: "perf_event", Type: "cgroup", Data: "perf_event"},
		{Dir: "pids", Type: "cgroup", Data: "pids"},
		{Dir: "systemd", Type: "cgroup", Data: "xattr,name=systemd"},
	}})
}

func TestLayoutIgnoresOtherMounts(t *testing.T) {
	text := hybridMountinfo +
		// Deeper than one level below /sys/fs/cgroup.
		"41 40 0:38 / /sys/fs/cgroup/unified/sub rw - tmpfs tmpfs rw\n" +
		// A sibling directory whose name merely starts the same way.
		"42 22 0:39 / /sys/fs/cgroupx rw - cgroup cgroup rw,rdma\n" +
		// A level's mirror elsewhere.
		"43 1 0:40 / /run/cl-unshare/levels/web/cgroup/memory rw - cgroup cgroup rw,memory\n" +
		// A non-cgroup filesystem in the tmpfs.
		"44 30 0:41 / /sys/fs/cgroup/scratch rw - tmpfs tmpfs rw\n"
	l := layoutOf(t, text)
	if l.Kind != Hybrid || len(l.FS) != 11 {
		t.Errorf("got %s layout with %d filesystems, want hybrid with 11:\n%s", l.Kind, len(l.FS), fsString(l.FS))
	}
	for _, f := range l.FS {
		if strings.Contains(f.Dir, "/") || f.Dir == "scratch" || f.Data == "rdma" {
			t.Errorf("layout includes %+v", f)
		}
	}
}

func TestLayoutStacked(t *testing.T) {
	// cgroup2 mounted over a hybrid /sys/fs/cgroup hides it all.
	l := layoutOf(t, hybridMountinfo+"50 22 0:50 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
	checkLayout(t, l, Layout{Kind: Unified, FS: []FS{{Type: "cgroup2"}}})

	// A v1 hierarchy mounted twice at the same place: the last one counts.
	l = layoutOf(t, hybridMountinfo+"51 30 0:51 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n")
	for _, f := range l.FS {
		if f.Dir == "cpu" && f.Data != "cpu,cpuacct" {
			t.Errorf("stacked cpu mount: Data = %q, want cpu,cpuacct (the top mount)", f.Data)
		}
	}

	// A tmpfs with hierarchies mounted over a unified /sys/fs/cgroup.
	text := unifiedMountinfo +
		"60 25 0:60 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n" +
		"61 60 0:61 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
	checkLayout(t, layoutOf(t, text), Layout{Kind: Legacy, FS: []FS{
		{Dir: "", Type: "tmpfs", Data: LayoutRootData},
		{Dir: "memory", Type: "cgroup", Data: "memory"},
	}})

	// An empty tmpfs over a unified /sys/fs/cgroup.
	_, err := LayoutFromMounts(parse(t, unifiedMountinfo+"60 25 0:60 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"))
	if err == nil || !strings.Contains(err.Error(), "no cgroup hierarchy") {
		t.Errorf("empty tmpfs over cgroup2: err = %v, want \"no cgroup hierarchy\"", err)
	}
}

func TestLayoutStackedHidesChildren(t *testing.T) {
	// A fresh tmpfs mounted over a hybrid /sys/fs/cgroup hides the
	// hierarchies mounted in the old one: nothing is visible in it.
	_, err := LayoutFromMounts(parse(t, hybridMountinfo+"50 22 0:50 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"))
	if err == nil {
		t.Error("LayoutFromMounts described hierarchies hidden under a stacked tmpfs, want an error")
	}
}

func TestLayoutErrors(t *testing.T) {
	for _, c := range []struct{ name, text, msg string }{
		{"nothing mounted", "22 1 0:20 / /sys rw - sysfs sysfs rw\n", "nothing is mounted at /sys/fs/cgroup"},
		{"empty table", "", "nothing is mounted at /sys/fs/cgroup"},
		{"only below", "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "nothing is mounted at /sys/fs/cgroup"},
		{"empty tmpfs", "30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n", "tmpfs with no cgroup hierarchy"},
		{"tmpfs with a tmpfs", "30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n" +
			"31 30 0:28 / /sys/fs/cgroup/x rw - tmpfs tmpfs rw\n", "tmpfs with no cgroup hierarchy"},
		{"sysfs", "30 22 0:27 / /sys/fs/cgroup rw - sysfs sysfs rw\n", "/sys/fs/cgroup is sysfs, not tmpfs or cgroup2"},
		{"v1 at root", "30 22 0:27 / /sys/fs/cgroup rw - cgroup cgroup rw,memory\n", "/sys/fs/cgroup is cgroup, not tmpfs or cgroup2"},
	} {
		l, err := LayoutFromMounts(parse(t, c.text))
		if err == nil {
			t.Errorf("%s: got layout %+v, want an error", c.name, l)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %q, want it to contain %q", c.name, err, c.msg)
		}
	}
}

func TestV1Data(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"rw,cpu", "cpu"},
		{"ro,cpu,cpuacct", "cpu,cpuacct"},
		{"rw,name=systemd", "name=systemd"},
		{"rw,xattr,name=systemd", "xattr,name=systemd"},
		{"rw,cpuset,noprefix,release_agent=/sbin/x", "cpuset,noprefix"},
		{"rw,cpuset,clone_children", "cpuset,clone_children"},
		{"rw,net_cls,net_prio", "net_cls,net_prio"},
		{"rw,release_agent=/x,name=foo", "name=foo"},
		{"rw", ""},
		{"", ""},
	} {
		if got := V1Data(c.in); got != c.want {
			t.Errorf("V1Data(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestControllers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"cpu", []string{"cpu"}},
		{"cpu,cpuacct", []string{"cpu", "cpuacct"}},
		{"xattr,name=systemd", []string{"name=systemd"}},
		{"cpuset,noprefix", []string{"cpuset"}},
		{"clone_children,memory", []string{"memory"}},
		{"net_cls,net_prio", []string{"net_cls", "net_prio"}},
		{"", nil},
	} {
		if got := Controllers(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Controllers(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestV1ShapeOptions(t *testing.T) {
	// The kernel shows these v1 superblock options besides controllers and
	// name= (cgroup1_show_options): they shape a hierarchy, not name it.
	for _, c := range []struct {
		in, data string
		ctl      []string
	}{
		{"rw,cpuset,cpuset_v2_mode", "cpuset,cpuset_v2_mode", []string{"cpuset"}},
		{"rw,memory,favordynmods", "memory,favordynmods", []string{"memory"}},
	} {
		d := V1Data(c.in)
		if d != c.data {
			t.Errorf("V1Data(%q) = %q, want %q", c.in, d, c.data)
		}
		if got := Controllers(d); !reflect.DeepEqual(got, c.ctl) {
			t.Errorf("Controllers(%q) = %q, want %q", d, got, c.ctl)
		}
	}
}

func TestUnder(t *testing.T) {
	for _, c := range []struct {
		p, dir string
		want   bool
	}{
		{"/sys/fs/cgroup", "/sys/fs/cgroup", true},
		{"/sys/fs/cgroup/", "/sys/fs/cgroup", true},
		{"/sys/fs/cgroup/memory", "/sys/fs/cgroup", true},
		{"/sys/fs/cgroup/memory/a/b", "/sys/fs/cgroup", true},
		{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/", true},
		{"/sys/fs/cgroupx", "/sys/fs/cgroup", false},
		{"/sys/fs", "/sys/fs/cgroup", false},
		{"/sys/fs/cgroup/../x", "/sys/fs/cgroup", false},
		{"/", "/", true},
		{"/a", "/", true},
		{"/user.slice", "/user", false},
		{"/user/x", "/user", true},
		{"/run/cl-unshare/levels/a", "/run/cl-unshare", true},
	} {
		if got := Under(c.p, c.dir); got != c.want {
			t.Errorf("Under(%q, %q) = %v, want %v", c.p, c.dir, got, c.want)
		}
	}
}
