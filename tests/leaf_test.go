package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// A level's root hands out controllers as a host's root
// does, with nothing moved first: a child of the root gets a memory,
// pids and cpuset limit of its own, and they hold. On cgroup2 the root
// holds no process and has the level's controllers enabled already.
func TestRootDelegates(t *testing.T) {
	requires(t, "root", "cgroupns", "2cpus")
	cs := needController(t, "memory", "pids", "cpuset")
	noLeaks(t)
	self, _ := os.Executable()
	mem, pids, cpuset := cs["memory"], cs["pids"], cs["cpuset"]
	memFile := "memory.limit_in_bytes"
	if mem.v2 {
		memFile = "memory.max"
	}
	var lines []string
	if v2 := hierarchy(t, "cgroup2"); v2 != nil {
		r := insideDir(*v2)
		lines = append(lines,
			"echo root-procs=$(cat "+r+"/cgroup.procs | wc -l)",
			"echo delegated=$(cat "+r+"/cgroup.subtree_control | tr ' ' ,)",
			"echo offered=$(cat "+r+"/cgroup.controllers | tr ' ' ,)")
		if mem.v2 {
			lines = append(lines, "echo +memory > "+r+"/cgroup.subtree_control; echo enable=$?")
		}
	}
	lines = append(lines,
		fmt.Sprintf("mkdir %s/c1 && echo 33554432 > %s/c1/%s; echo c1-mem=$?", mem.inside, mem.inside, memFile),
		fmt.Sprintf("sh -c 'echo $$ > %s/c1/cgroup.procs && CLU_HELPER=hog exec %s 64'; echo c1-hog64=$?", mem.inside, self),
		fmt.Sprintf("mkdir -p %s/c1 && echo 20 > %s/c1/pids.max; echo c1-pids=$?", pids.inside, pids.inside),
		fmt.Sprintf("sh -c 'echo $$ > %s/c1/cgroup.procs && CLU_HELPER=forker exec %s 40'", pids.inside, self),
		fmt.Sprintf("mkdir -p %s/c2 && echo 1 > %s/c2/cpuset.cpus; echo c2-cpus=$?", cpuset.inside, cpuset.inside),
		fmt.Sprintf("[ -z \"$(cat %s/c2/cpuset.mems)\" ] && cat %s/cpuset.mems > %s/c2/cpuset.mems", cpuset.inside, cpuset.inside, cpuset.inside),
		fmt.Sprintf("echo c2-nproc=$(sh -c 'echo $$ > %s/c2/cgroup.procs && nproc')", cpuset.inside),
		fmt.Sprintf("rmdir %s/c1 %s/c2 %s/c1 2>/dev/null; true", mem.inside, cpuset.inside, pids.inside))
	r := clu(t, append([]string{"--memory", "256M", "--pids-max", "100", "--cpuset-cpus", "0-1"}, script(lines...)...)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	out := parseKV(r.stdout)
	if v2 := hierarchy(t, "cgroup2"); v2 != nil {
		if out["root-procs"] != "0" {
			t.Errorf("the level's cgroup2 root holds %s processes, want 0", out["root-procs"])
		}
		if out["delegated"] != out["offered"] {
			t.Errorf("the root enables %q for children, offers %q", out["delegated"], out["offered"])
		}
		if mem.v2 && out["enable"] != "0" {
			t.Errorf("echo +memory > cgroup.subtree_control: %s", out["enable"])
		}
	}
	if out["c1-mem"] != "0" || out["c1-hog64"] != "137" {
		t.Errorf("a child with 32M: set=%s, a 64M hog there exited %s, want 0 and 137: %s", out["c1-mem"], out["c1-hog64"], r.stdout)
	}
	if n, _ := strconv.Atoi(out["forked"]); out["c1-pids"] != "0" || n == 0 || n >= 20 {
		t.Errorf("a child with pids.max 20: set=%s, forked %s of 40", out["c1-pids"], out["forked"])
	}
	if out["c2-cpus"] != "0" || out["c2-nproc"] != "1" {
		t.Errorf("a child with one CPU: set=%s, nproc %s", out["c2-cpus"], out["c2-nproc"])
	}
}

// While CMD runs the host sees the level's
// cgroup2 root empty and CMD in the leaf, which list, inspect and the
// status stream name; --leaf renames it, --no-leaf keeps CMD in the root.
func TestLeaf(t *testing.T) {
	requires(t, "root", "cgroupns")
	v2 := hierarchy(t, "cgroup2")
	if v2 == nil {
		// Legacy: v1 has no such rule, and a level has no leaf.
		noLeaks(t)
		r := clu(t, "--", "cat", "/proc/self/cgroup")
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if r.code != 0 || !strings.HasSuffix(line, ":/") {
				t.Errorf("exit %d, line %q: want :/ everywhere on a legacy host", r.code, line)
			}
		}
		return
	}
	for _, c := range []struct {
		args []string
		leaf string
	}{{nil, lvl.DefaultLeaf}, {[]string{"--leaf", "work"}, "work"}, {[]string{"--no-leaf"}, ""}} {
		t.Run(fmt.Sprint(c.args), func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			l := start(t, nil, append(c.args, script("grep ^0:: /proc/self/cgroup > "+dir+"/cg", "echo $$ > "+dir+"/pid", "sleep 600")...)...)
			pid := pidOf(t, l, dir+"/pid")
			inner := filepath.Join(outer(*v2, l.name), cgroup.InnerName)
			want, start := "0::/", inner
			if c.leaf != "" {
				want, start = "0::/"+c.leaf, filepath.Join(inner, c.leaf)
			}
			if got := mustRead(t, dir+"/cg"); got != want {
				t.Errorf("/proc/self/cgroup's v2 line %q, want %q", got, want)
			}
			procs, _ := cgroup.Fields(inner, "cgroup.procs")
			if in, _ := cgroup.Fields(start, "cgroup.procs"); !slices.Contains(in, strconv.Itoa(pid)) || c.leaf != "" && len(procs) != 0 {
				t.Errorf("the root holds %v, %s holds %v; CMD is %d", procs, start, in, pid)
			}
			wantLeaf := ""
			if c.leaf != "" {
				wantLeaf = start
			}
			i := findInfo(listJSON(t), l.name)
			if i == nil || i.Cgroups["cgroup2"].Leaf != wantLeaf {
				t.Fatalf("list: %+v, want the leaf %q", i, wantLeaf)
			}
			var in lvl.Info
			r := cmd(t, "inspect", "--json", l.name)
			if err := json.Unmarshal([]byte(r.stdout), &in); err != nil || in.Cgroups["cgroup2"].Leaf != wantLeaf {
				t.Errorf("inspect: %v: %s", err, r.stdout)
			}
			l.stop(t)
		})
	}
	for _, bad := range [][]string{{"--leaf", "a/b"}, {"--leaf", ""}, {"--leaf", "x", "--no-leaf"}} {
		if r := clu(t, append(bad, "--", "true")...); r.code != 125 || !oneLine(r.stderr, "--leaf") {
			t.Errorf("%q: exit %d, %q", bad, r.code, r.stderr)
		}
	}
}

// A nested level goes beside the leaf, in the root that
// can give it controllers; --user levels own their leaf.
func TestLeafNestingAndUser(t *testing.T) {
	requires(t, "root", "cgroupns")
	v2 := hierarchy(t, "cgroup2")
	if v2 == nil {
		v2 = &hierarchies(t)[0] // legacy: no leaf, nested levels in the root all the same
	}
	noLeaks(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	l := start(t, nil, append([]string{"--user"}, script(bin+" --name n2 -- /bin/sh -c 'echo $$ > "+dir+"/pid; exec sleep 600'")...)...)
	pidOf(t, l, dir+"/pid")
	inner := filepath.Join(outer(*v2, l.name), cgroup.InnerName)
	var n2 *lvl.Info
	waitFor(t, "the nested level, running", func() bool {
		if i := findInfo(listJSON(t), l.name); i != nil && len(i.Levels) == 1 && i.Levels[0].State == lvl.Running {
			n2 = &i.Levels[0]
		}
		return n2 != nil
	})
	wantLeaf, own := "", []string{filepath.Join(inner, "cgroup.procs")}
	if v2.V2() {
		wantLeaf = filepath.Join(inner, "n2", cgroup.InnerName, lvl.DefaultLeaf)
		own = []string{filepath.Join(inner, lvl.DefaultLeaf), filepath.Join(inner, lvl.DefaultLeaf, "cgroup.procs"), filepath.Join(inner, "cgroup.subtree_control")}
	}
	if got := n2.Cgroups[v2.Name()]; got.Outer != filepath.Join(inner, "n2") || got.Leaf != wantLeaf {
		t.Errorf("the nested level's %s cgroups %+v, want beside the leaf, in %s", v2.Name(), got, inner)
	}
	for _, p := range own {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Uid != 100000 {
			t.Errorf("%s belongs to %d (%v), want the level's root 100000", p, st.Uid, err)
		}
	}
	l.stop(t)
}
