package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// DESIGN contract 1: outer and inner cgroups in cgroup v2 and every v1 hierarchy,
// under the launcher's cgroup (here: the test parent), cpuset joinable.
func TestCgroupsInEveryHierarchy(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, script("echo $$ > "+dir+"/pid", "sleep 600")...)
	pid := pidOf(t, l, dir+"/pid")
	seen := procCgroups(t, pid)
	hs := hierarchies(t)
	for _, h := range hs {
		o := outer(h, l.name)
		in := filepath.Join(o, cgroup.InnerName)
		for _, d := range []string{o, in} {
			if st, err := os.Stat(d); err != nil || !st.IsDir() {
				t.Errorf("%s: cgroup %s missing: %v", h.Name(), d, err)
			}
		}
		// The host sees CMD in PARENT/NAME/level of this hierarchy.
		want := startCgroup(h, filepath.Join(cgroup.Base(h), testParent, l.name, cgroup.InnerName))
		if got := seen[h.Name()]; got != want {
			t.Errorf("%s: CMD is in %q, want %q", h.Name(), got, want)
		}
		if !h.V2() && h.Has("cpuset") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v := mustRead(t, filepath.Join(in, f)); v == "" {
					t.Errorf("inner %s is empty: tasks could not join", f)
				}
			}
		}
	}
	if len(hs) < 2 && hierarchy(t, "cgroup2") == nil {
		t.Fatalf("found no hierarchy")
	}
	t.Logf("level %s in %d hierarchies", l.name, len(hs))
}

// DESIGN contract 1: --cgroup-parent chooses where, relative to the launcher's cgroup.
func TestCgroupParent(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, append([]string{"--cgroup-parent", testParent + "/deeper/still"},
		script("echo $$ > "+dir+"/pid", "sleep 600")...)...)
	pid := pidOf(t, l, dir+"/pid")
	for name, p := range procCgroups(t, pid) {
		h := hierarchy(t, name)
		if h == nil {
			continue
		}
		want := startCgroup(*h, filepath.Join(cgroup.Base(*h), testParent, "deeper/still", l.name, cgroup.InnerName))
		if p != want {
			t.Errorf("%s: CMD in %s, want %s", name, p, want)
		}
	}
	l.stop(t)
}

func TestCgroupParentEscapes(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, p := range []string{"..", "../x", "a/../../b", "/abs"} {
		r := clu(t, "--cgroup-parent", p, "--", "true")
		// clu adds the test parent first; the later flag wins.
		if r.code != 125 || !strings.Contains(r.stderr, "--cgroup-parent") {
			t.Errorf("--cgroup-parent %q: code %d, stderr %q; want 125 naming the flag", p, r.code, r.stderr)
		}
	}
}

// DESIGN contract 2: a cgroup namespace rooted at the inner cgroup in every hierarchy,
// and mount and cgroup namespaces of its own.
func TestNamespaces(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	r := clu(t, script("cat /proc/self/cgroup", "echo ns", "readlink /proc/self/ns/cgroup", "readlink /proc/self/ns/mnt")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	cg, ns, _ := strings.Cut(r.stdout, "ns\n")
	lines := strings.Split(strings.TrimSpace(cg), "\n")
	if len(lines) < 1 {
		t.Fatal("no /proc/self/cgroup lines")
	}
	for _, line := range lines {
		if !ownLine(line) {
			t.Errorf("/proc/self/cgroup line %q is not the level's own (:/, or 0::/init)", line)
		}
	}
	links := strings.Fields(ns)
	mine := []string{readlink(t, "/proc/self/ns/cgroup"), readlink(t, "/proc/self/ns/mnt")}
	if len(links) != 2 {
		t.Fatalf("namespace links: %q", ns)
	}
	for i := range links {
		if links[i] == mine[i] {
			t.Errorf("level shares namespace %s with the launcher", links[i])
		}
	}
}

func readlink(t *testing.T, p string) string {
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// DESIGN contract 4: a fresh /sys/fs/cgroup of the host's layout, every mount rooted
// at the level's inner cgroup; no host cgroup path readable.
func TestFreshSysFsCgroup(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	host := layoutOf(mountLines(t, "self"))
	r := clu(t, script("cat /proc/self/mountinfo")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	inside := mountLinesFrom(t, strings.NewReader(r.stdout))
	got := layoutOf(inside)
	if fmt.Sprint(got) != fmt.Sprint(host) {
		t.Errorf("layout inside:\n%v\nhost's:\n%v", got, host)
	}
	for _, m := range inside {
		f := strings.Fields(m)
		if (f[1] == "cgroup" || f[1] == "cgroup2") && f[2] != "/" {
			t.Errorf("cgroup mount %s shows %s, not the level's root", f[0], f[2])
		}
	}
	// The launcher's own cgroups (the test's) must not be reachable.
	for _, h := range hierarchies(t) {
		if h.Path == "/" {
			continue
		}
		rel := strings.TrimPrefix(h.Dir(h.Path), h.Mount)
		p := filepath.Join("/sys/fs/cgroup", filepath.Base(h.Mount), rel)
		r := clu(t, "--", "/bin/sh", "-c", "test -e "+p+" && echo visible || echo hidden")
		if strings.TrimSpace(r.stdout) != "hidden" {
			t.Errorf("host cgroup %s readable inside the level: %q %s", p, r.stdout, r.stderr)
		}
	}
}

// layoutOf keeps what defines a cgroup layout: the mounts at and directly
// under /sys/fs/cgroup, with their types.
func layoutOf(lines []string) []string {
	// What is visible: a later mount at a path hides an earlier one (a
	// mirror's cgroup2 on its tmpfs root, on a unified host).
	top := map[string]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		rel := strings.TrimPrefix(f[0], "/sys/fs/cgroup")
		if rel == f[0] || strings.Count(rel, "/") > 1 {
			continue
		}
		top[rel] = rel + " " + f[1]
	}
	var out []string
	for _, v := range top {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// A parent cl-unshare made is shared by the levels under it: whichever
// level ends last removes it, whichever order they end in.
func TestSharedCgroupParent(t *testing.T) {
	requires(t, "root", "cgroupns")
	for _, makerFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("maker-ends-first=%v", makerFirst), func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			parent := testParent + "/shared"
			a := start(t, nil, append([]string{"--cgroup-parent", parent}, script("echo $$ > "+dir+"/a", "sleep 600")...)...)
			pa := pidOf(t, a, dir+"/a")
			b := start(t, nil, append([]string{"--cgroup-parent", parent}, script("echo $$ > "+dir+"/b", "sleep 600")...)...)
			pb := pidOf(t, b, dir+"/b")
			first, second, pid := b, a, pa
			if makerFirst {
				first, second, pid = a, b, pb
			}
			first.stop(t)
			for name, p := range procCgroups(t, pid) {
				if h := hierarchy(t, name); h != nil {
					if _, err := os.Stat(h.Dir(p)); err != nil {
						t.Errorf("%s: the other level's cgroup went with the first: %v", name, err)
					}
				}
			}
			second.stop(t)
			for _, h := range hierarchies(t) {
				if _, err := os.Stat(h.Dir(filepath.Join(cgroup.Base(h), parent))); err == nil {
					t.Errorf("%s: parent %s left after both levels ended", h.Name(), parent)
				}
			}
		})
	}
}

// A parent someone else made is never removed.
func TestForeignCgroupParentKept(t *testing.T) {
	requires(t, "root", "cgroupns")
	h := hierarchies(t)[0]
	mine := h.Dir(filepath.Join(cgroup.Base(h), testParent+"-foreign"))
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(mine) }) // after noLeaks's check
	noLeaks(t)
	if r := clu(t, "--cgroup-parent", testParent+"-foreign", "--", "true"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("cl-unshare removed a parent cgroup it did not make: %v", err)
	}
}

// The cgroup v2 no-internal-process rule. Levels of a
// launcher whose v2 cgroup cannot hand controllers down go beside it; a
// launcher in a cgroup offered no controller at all is refused, with a
// message that names the controller, the cgroup and what to do.
func TestNoInternalProcessRule(t *testing.T) {
	requires(t, "root", "cgroupns")
	v2 := hierarchy(t, "cgroup2")
	if v2 == nil {
		// Legacy: v1 has no such rule; a level made from this populated
		// cgroup gets its limits right below it.
		cs := needController(t, "memory")
		noLeaks(t)
		dir := t.TempDir()
		l := start(t, nil, append([]string{"--memory", "32M"}, script("echo $$ > "+dir+"/pid", "sleep 600")...)...)
		pidOf(t, l, dir+"/pid")
		if v := mustRead(t, filepath.Join(outer(cs["memory"].h, l.name), "memory.limit_in_bytes")); v != "33554432" {
			t.Errorf("memory limit %s below the launcher's v1 cgroup, want 33554432", v)
		}
		l.stop(t)
		return
	}
	own := v2.Dir(v2.Path)
	offered, _ := cgroup.Fields(v2.Mount, "cgroup.controllers")
	if len(offered) == 0 {
		t.Fatalf("cgroup2 offers no controller here")
	}
	t.Run("placement", func(t *testing.T) {
		noLeaks(t)
		dir := t.TempDir()
		l := start(t, nil, script("echo $$ > "+dir+"/pid", "sleep 600")...)
		pid := pidOf(t, l, dir+"/pid")
		got := procCgroups(t, pid)["cgroup2"]
		want := startCgroup(*v2, filepath.Join(cgroup.Base(*v2), testParent, l.name, cgroup.InnerName))
		if got != want {
			t.Errorf("level's v2 cgroup %s, want %s", got, want)
		}
		procs, _ := cgroup.Fields(own, "cgroup.procs")
		on, _ := cgroup.Fields(own, "cgroup.subtree_control")
		if v2.Path != "/" && len(procs) > 0 && len(on) == 0 && len(offered) > 0 {
			// A session-scope-like cgroup: the level must sit beside it.
			if filepath.Dir(v2.Path) != cgroup.Base(*v2) {
				t.Errorf("launcher in populated %s; levels under %s, want its parent", v2.Path, cgroup.Base(*v2))
			}
		}
		l.stop(t)
	})
	t.Run("refusal", func(t *testing.T) {
		// A launcher in a cgroup that is offered nothing, whose parent
		// holds a process: both made by this test, under its own cgroup.
		// (busy's parent is the test's own, not own itself: a hybrid host
		// may enable controllers at cgroup2's root, as a 6.12 one does
		// the controllers it has no v1 hierarchy for.)
		held := filepath.Join(own, testParent+"-held")
		busy := filepath.Join(held, "busy")
		if err := os.MkdirAll(busy, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(busy); os.Remove(held) })
		noLeaks(t)
		hfd, err := unix.Open(held, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(hfd)
		fd, err := unix.Open(busy, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		other := exec.Command("sleep", "600")
		other.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: hfd}
		if err := other.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { other.Process.Kill(); other.Wait() }()
		c := offered[0]
		cmd := exec.Command(bin, "--set", c+".nosuchfile=1", "--", "true")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		cmd.Run()
		msg := stderr.String()
		if cmd.ProcessState.ExitCode() != 125 || !oneLine(msg, "the "+c+" controller is not offered to cgroup") ||
			!strings.Contains(msg, "--cgroup-parent") {
			t.Errorf("exit %d, stderr %q; want 125 and one line naming the %s controller, the cgroup and --cgroup-parent",
				cmd.ProcessState.ExitCode(), msg, c)
		}
		if !strings.Contains(msg, "no-internal-process rule") {
			// busy's parent is a non-root cgroup with a process: the rule bites.
			t.Errorf("the message does not name the no-internal-process rule: %q", msg)
		}
	})
}
