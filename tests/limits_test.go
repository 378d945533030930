package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
)

// ctl says where controller c lives here: its hierarchy, whether that is
// cgroup v2, and its directory inside a level (/sys/fs/cgroup/...).
type ctl struct {
	h      cgroup.Hierarchy
	v2     bool
	inside string
}

func controller(t *testing.T, c string) *ctl {
	t.Helper()
	if v2 := hierarchy(t, "cgroup2"); v2 != nil {
		have, _ := cgroup.Fields(v2.Mount, "cgroup.controllers")
		for _, x := range have {
			if x == c {
				return &ctl{h: *v2, v2: true, inside: insideDir(*v2)}
			}
		}
	}
	for _, h := range hierarchies(t) {
		if !h.V2() && h.Has(c) {
			return &ctl{h: h, inside: insideDir(h)}
		}
	}
	return nil
}

func insideDir(h cgroup.Hierarchy) string {
	return filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(h.Mount, "/sys/fs/cgroup"))
}

// builtWithout reports whether the VM said (CLU_VM_NO_V1) that its kernel
// has no v1 hierarchy for controller c: a fact of the kernel's build, not a
// missing feature of cl-unshare, so a skip even under CL_UNSHARE_NO_SKIP.
func builtWithout(c string) bool {
	return slices.Contains(strings.Split(os.Getenv("CLU_VM_NO_V1"), ","), c)
}

func needController(t *testing.T, names ...string) map[string]*ctl {
	t.Helper()
	out := map[string]*ctl{}
	for _, n := range names {
		c := controller(t, n)
		if c == nil {
			if builtWithout(n) {
				t.Skipf("needs the %s controller, which this kernel is built without as a v1 hierarchy, and no cgroup2 offers", n)
			}
			if os.Getenv("CL_UNSHARE_NO_SKIP") != "" {
				t.Fatalf("needs the %s controller, and CL_UNSHARE_NO_SKIP forbids skipping", n)
			}
			t.Skipf("needs the %s controller", n)
		}
		out[n] = c
	}
	return out
}

// DESIGN contract 5: each limit reaches the outer cgroup, in the form of the layout,
// and is mirrored on the inner one, before CMD starts.
func TestLimitsWritten(t *testing.T) {
	requires(t, "root", "cgroupns")
	cs := needController(t, "memory", "cpu", "cpuset", "pids")
	noLeaks(t)
	type want struct{ ctl, file, value string }
	var wants []want
	extra := "memory.soft_limit_in_bytes=16777216"
	if cs["memory"].v2 {
		extra = "memory.high=33554432"
	}
	if cs["memory"].v2 {
		wants = append(wants, want{"memory", "memory.max", "50331648"}, want{"memory", "memory.high", "33554432"})
	} else {
		wants = append(wants, want{"memory", "memory.limit_in_bytes", "50331648"}, want{"memory", "memory.soft_limit_in_bytes", "16777216"})
	}
	if cs["cpu"].v2 {
		wants = append(wants, want{"cpu", "cpu.max", "50000 100000"}, want{"cpu", "cpu.weight", "200"})
	} else {
		wants = append(wants, want{"cpu", "cpu.cfs_quota_us", "50000"}, want{"cpu", "cpu.cfs_period_us", "100000"},
			want{"cpu", "cpu.shares", strconv.FormatUint(cgroup.WeightToShares(200), 10)})
	}
	wants = append(wants, want{"cpuset", "cpuset.cpus", "0"}, want{"cpuset", "cpuset.mems", "0"}, want{"pids", "pids.max", "50"})
	ioSet := []string{}
	if io := controller(t, "io"); io != nil && io.v2 {
		cs["io"] = io
		ioSet = []string{"--set", "io.weight=50"}
		wants = append(wants, want{"io", "io.weight", "default 50"})
	}

	dir := t.TempDir()
	// CMD records what it reads first thing: the limits were there before it ran.
	var reads []string
	for _, w := range wants {
		reads = append(reads, fmt.Sprintf("echo %s=$(cat %s/%s)", w.file, cs[w.ctl].inside, w.file))
	}
	l := start(t, nil, append(append(ioSet, "--memory", "48M", "--cpus", "0.5", "--cpu-weight", "200",
		"--cpuset-cpus", "0", "--cpuset-mems", "0", "--pids-max", "50", "--set", extra),
		script("{ "+strings.Join(reads, "; ")+"; } > "+dir+"/seen", "echo $$ > "+dir+"/pid", "sleep 600")...)...)
	pidOf(t, l, dir+"/pid")
	seen := mustRead(t, dir+"/seen") + "\n"
	for _, w := range wants {
		o := outer(cs[w.ctl].h, l.name)
		for _, d := range []string{o, filepath.Join(o, cgroup.InnerName)} {
			if got := mustRead(t, filepath.Join(d, w.file)); got != w.value {
				t.Errorf("%s/%s = %q, want %q", d, w.file, got, w.value)
			}
		}
		if !strings.Contains(seen, w.file+"="+w.value+"\n") {
			t.Errorf("CMD read %s before it was set; it saw:\n%s", w.file, seen)
		}
	}
	l.stop(t)
}

// A limit whose controller the host does not offer is an error
// naming it, and nothing is made.
func TestLimitMissingController(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	r := clu(t, "--set", "nosuch.max=1", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "nosuch controller") {
		t.Errorf("code %d, stderr %q: want 125 naming the nosuch controller", r.code, r.stderr)
	}
	if controller(t, "rdma") == nil {
		r := clu(t, "--set", "rdma.max=mlx4_0 hca_handle=2", "--", "true")
		if r.code != 125 || !strings.Contains(r.stderr, "rdma controller") {
			t.Errorf("code %d, stderr %q: want 125 naming the rdma controller", r.code, r.stderr)
		}
	}
}

// DESIGN contract 5: the level writes larger values to its own root's limit files;
// the effective limits do not grow. It can sub-divide them.
func TestCannotRaiseLimits(t *testing.T) {
	requires(t, "root", "cgroupns", "2cpus")
	cs := needController(t, "memory", "cpuset", "pids")
	noLeaks(t)
	self, _ := os.Executable()
	mem, pids, cpuset := cs["memory"], cs["pids"], cs["cpuset"]
	memFile, memFree := "memory.limit_in_bytes", "9223372036854771712"
	if mem.v2 {
		memFile, memFree = "memory.max", "max"
	}
	lines := []string{
		fmt.Sprintf("echo %s > %s/%s 2>/dev/null; echo raise-mem=$?", memFree, mem.inside, memFile),
		fmt.Sprintf("echo max > %s/pids.max 2>/dev/null; echo raise-pids=$?", pids.inside),
		fmt.Sprintf("echo 0-1 > %s/cpuset.cpus 2>/dev/null; echo raise-cpuset=$?", cpuset.inside),
		"echo nproc=$(nproc)",
		fmt.Sprintf("CLU_HELPER=hog %s 64; echo hog64=$?", self),
		fmt.Sprintf("CLU_HELPER=forker %s 60", self),
		// Sub-divide memory: a child with 16M; a hog of 24M in it dies, 8M lives.
		fmt.Sprintf("mkdir %s/sub && echo 16777216 > %s/sub/%s; echo sub-mem=$?", mem.inside, mem.inside, memFile),
		fmt.Sprintf("sh -c 'echo $$ > %s/sub/cgroup.procs && CLU_HELPER=hog exec %s 24'; echo subhog24=$?", mem.inside, self),
		fmt.Sprintf("sh -c 'echo $$ > %s/sub/cgroup.procs && CLU_HELPER=hog exec %s 8'; echo subhog8=$?", mem.inside, self),
		fmt.Sprintf("rmdir %s/sub", mem.inside),
	}
	r := clu(t, append([]string{"--memory", "32M", "--pids-max", "40", "--cpuset-cpus", "0"}, script(lines...)...)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("inside the level:\n%s", r.stdout)
	out := parseKV(r.stdout)
	if nsdelegate(t) {
		// cgroup2 nsdelegate: the kernel refuses writes to the namespace
		// root's own limit files outright.
		for k, c := range map[string]*ctl{"raise-mem": mem, "raise-pids": pids, "raise-cpuset": cpuset} {
			if c.v2 && out[k] == "0" {
				t.Errorf("%s succeeded under nsdelegate, want EPERM", k)
			}
		}
	}
	if out["nproc"] != "1" {
		t.Errorf("nproc = %s after raising cpuset.cpus, want 1", out["nproc"])
	}
	if out["hog64"] != "137" {
		t.Errorf("a 64M hog under --memory 32M exited %s, want 137 (OOM kill)", out["hog64"])
	}
	if n, _ := strconv.Atoi(out["forked"]); n == 0 || n >= 40 {
		t.Errorf("forked %s children under --pids-max 40 after raising pids.max, want between 1 and 39", out["forked"])
	}
	if out["sub-mem"] != "0" || out["subhog24"] != "137" || out["subhog8"] != "0" {
		t.Errorf("sub-division: sub-mem=%s subhog24=%s subhog8=%s, want 0, 137, 0", out["sub-mem"], out["subhog24"], out["subhog8"])
	}
}

// DESIGN contract 5: a child cgroup inside the level can be given a single CPU.
func TestSubdivideCpuset(t *testing.T) {
	requires(t, "root", "cgroupns", "2cpus")
	cs := needController(t, "cpuset")
	noLeaks(t)
	c := cs["cpuset"].inside
	lines := []string{
		"echo nproc=$(nproc)",
		"mkdir " + c + "/one",
		"echo 1 > " + c + "/one/cpuset.cpus",
		"[ -e " + c + "/one/cpuset.mems ] && [ -z \"$(cat " + c + "/one/cpuset.mems)\" ] && cat " + c + "/cpuset.mems > " + c + "/one/cpuset.mems",
		"echo one=$(sh -c 'echo $$ > " + c + "/one/cgroup.procs && nproc')",
		"rmdir " + c + "/one",
	}
	r := clu(t, append([]string{"--cpuset-cpus", "0-1"}, script(lines...)...)...)
	out := parseKV(r.stdout)
	if r.code != 0 || out["nproc"] != "2" || out["one"] != "1" {
		t.Errorf("exit %d, nproc=%s one=%s (want 0, 2, 1): %s %s", r.code, out["nproc"], out["one"], r.stdout, r.stderr)
	}
}

// nsdelegate reports whether the host's cgroup2 is mounted with nsdelegate.
func nsdelegate(t *testing.T) bool {
	infos, err := mounts.Current()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range infos {
		if m.FSType == "cgroup2" && strings.Contains(","+m.VFSOptions+",", ",nsdelegate,") {
			return true
		}
	}
	return false
}

func parseKV(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
