package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// sharedDir makes a shared mount point owned by the test, so host mounts
// made under it propagate to levels (this host's / is private).
func sharedDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(d, d, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	if err := unix.Mount("", d, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	return d
}

// DESIGN contract 3: host mounts still reach the level; the level's mounts never reach
// the host, except its cgroup mounts, mirrored at RUN/levels/NAME/cgroup,
// including a cgroupfs it mounts later.
func TestPropagation(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	// A cgroupfs of a hierarchy the host has: cgroup2, or on a legacy
	// host a v1 one (a new v1 hierarchy can't be made in a cgroupns).
	late, lateType, lateHier := "mount -t cgroup2 none /sys/fs/cgroup/extra", "cgroup2", hierarchy(t, "cgroup2")
	if lateHier == nil {
		lateHier = &hierarchies(t)[0]
		late = "mount -t cgroup -o " + strings.Join(lateHier.Controllers, ",") + " none /sys/fs/cgroup/extra"
		lateType = "cgroup"
	}
	dir := t.TempDir()
	shared := sharedDir(t)
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o755)
	os.Mkdir(filepath.Join(shared, "late"), 0o755)
	os.Mkdir(filepath.Join(shared, "from-level"), 0o755)
	l := start(t, nil, script(
		"echo $$ > "+dir+"/pid",
		"while [ ! -e "+dir+"/go1 ]; do sleep 0.01; done",
		"grep -q ' "+shared+"/late ' /proc/self/mountinfo && echo yes > "+dir+"/seen-late",
		"mount -t tmpfs level-private "+private+" || exit 11",
		"mount -t tmpfs level-shared "+shared+"/from-level || exit 12",
		"mkdir /sys/fs/cgroup/extra || exit 13",
		late+" || exit 14",
		"echo done > "+dir+"/mounted",
		"while [ ! -e "+dir+"/go2 ]; do sleep 0.01; done",
	)...)
	pidOf(t, l, dir+"/pid")
	if err := unix.Mount("late", filepath.Join(shared, "late"), "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(filepath.Join(shared, "late"), unix.MNT_DETACH)
	os.WriteFile(dir+"/go1", nil, 0o644)
	waitFile(t, l, dir+"/mounted")

	host := mountLines(t, "self")
	mirror := filepath.Join(runDir, "levels", l.name, "cgroup")
	inner := cgroup.Base(*lateHier)
	var mirrored []string
	extra := false
	for _, m := range host {
		f := strings.Fields(m)
		if f[0] == private || f[0] == filepath.Join(shared, "from-level") {
			t.Errorf("the level's mount at %s reached the host", f[0])
		}
		if rel, ok := strings.CutPrefix(f[0], mirror); ok {
			mirrored = append(mirrored, "/sys/fs/cgroup"+rel+" "+f[1]+" /")
			if rel == "/extra" {
				extra = true
				want := filepath.Join(inner, testParent, l.name, cgroup.InnerName)
				if f[1] != lateType || f[2] != want {
					t.Errorf("mirror of the level's late mount: %s, want %s rooted at %s", m, lateType, want)
				}
			}
		}
	}
	if !extra {
		t.Errorf("the %s the level mounted at /sys/fs/cgroup/extra is not at %s/extra on the host", lateType, mirror)
	}
	want := append(layoutOf(host), "/extra "+lateType)
	if got := layoutOf(mirrored); fmt.Sprint(slices.Sorted(slices.Values(got))) != fmt.Sprint(slices.Sorted(slices.Values(want))) {
		t.Errorf("mirror layout %v, want the host's %v", got, want)
	}
	os.WriteFile(dir+"/go2", nil, 0o644)
	if r := l.wait(t); r.code != 0 {
		t.Fatalf("level exited %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(dir + "/seen-late"); err != nil {
		t.Errorf("a host mount made after the start did not reach the level")
	}
	for _, m := range mountLines(t, "self") {
		if strings.HasPrefix(m, mirror) {
			t.Errorf("mirror still mounted after exit: %s", m)
		}
	}
}

// DESIGN contract 4: --run-dir replaces /run/cl-unshare.
func TestRunDir(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	l := start(t, nil, append([]string{"--run-dir", run}, script("echo $$ > "+dir+"/pid", "sleep 600")...)...)
	pidOf(t, l, dir+"/pid")
	found := false
	for _, m := range mountLines(t, "self") {
		if strings.HasPrefix(m, filepath.Join(run, "levels", l.name, "cgroup")+" ") {
			found = true
		}
		if strings.HasPrefix(m, filepath.Join(runDir, "levels", l.name)) {
			t.Errorf("level mounted under the default run dir: %s", m)
		}
	}
	if !found {
		t.Errorf("no mirror under %s", run)
	}
	l.stop(t)
	if ents, _ := os.ReadDir(filepath.Join(run, "levels")); len(ents) != 0 {
		t.Errorf("%s/levels not empty after exit: %v", run, ents)
	}
	// With no level left, gc takes the template and RUN's own mount.
	if r := cmd(t, "--run-dir", run, "gc"); r.code != 0 || r.stdout != "" {
		t.Errorf("gc --run-dir: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	for _, m := range mountLines(t, "self") {
		if strings.HasPrefix(m, run+" ") || strings.HasPrefix(m, run+"/") {
			t.Errorf("still mounted after gc: %s", m)
		}
	}
}
