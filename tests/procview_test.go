package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needFUSE skips (fails in CI) without FUSE: /dev/fuse and the fs type.
func needFUSE(t *testing.T) {
	t.Helper()
	b, _ := os.ReadFile("/proc/filesystems")
	if _, err := os.Stat("/dev/fuse"); err != nil || !strings.Contains(string(b), "\tfuse\n") {
		if os.Getenv("CL_UNSHARE_NO_SKIP") != "" {
			t.Fatalf("needs FUSE (/dev/fuse, and fuse in /proc/filesystems), and CL_UNSHARE_NO_SKIP forbids skipping")
		}
		t.Skip("needs FUSE (/dev/fuse, and fuse in /proc/filesystems)")
	}
}

// hostMemTotal is the host's MemTotal line's number, in kB.
func hostMemTotal(t *testing.T) int {
	t.Helper()
	b, _ := os.ReadFile("/proc/meminfo")
	f := strings.Fields(string(b))
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// what runs in a level to see its machine: name=value lines, each the
// output of a program people use to size themselves, where it exists.
var probes = []struct{ name, cmd string }{
	{"cpuinfo", "grep -c ^processor /proc/cpuinfo"},
	{"online", "cat /sys/devices/system/cpu/online"},
	// busybox's cat copies with sendfile(2), which reads a FUSE file
	// through the page cache, up to the size the view reports.
	{"sendfile", "busybox cat /sys/devices/system/cpu/online"},
	{"statcpus", "grep -c '^cpu[0-9]' /proc/stat"},
	{"memtotal", "awk '/^MemTotal/ {print $2}' /proc/meminfo"},
	// procps's free reads /proc/meminfo; busybox's asks sysinfo(2), which
	// no view of /proc can change (nor can lxcfs's).
	{"free", "free -m | awk '/^Mem/ {print $2}'"},
	{"getconf", "getconf _NPROCESSORS_ONLN"},
	{"python", "python3 -c 'import os; print(os.cpu_count())'"},
	{"top", "top -bn1 | grep -i 'mem' | head -1"},
	{"uptime", "cut -d. -f1 /proc/uptime"},
	{"nproc", "nproc"},
	// Go's runtime.NumCPU follows the affinity mask, GOMAXPROCS (Go 1.25)
	// the quota too: neither reads /proc, both are as the kernel says.
	{"gonumcpu", "CLU_HELPER=numcpu $CLU_SELF"},
}

func probeScript() string {
	var lines []string
	for _, p := range probes {
		word := strings.Fields(p.cmd)[0]
		if p.name == "gonumcpu" {
			word = "$CLU_SELF"
		}
		check := "command -v " + word + " >/dev/null"
		if p.name == "free" {
			check = "free -V >/dev/null 2>&1"
		}
		lines = append(lines, fmt.Sprintf("%s && echo %s=$(%s)", check, p.name, p.cmd))
	}
	return strings.Join(lines, "\n")
}

// --proc-view with --cpus, --cpuset-cpus and --memory: what nproc-like
// tools, free, top and Python read from /proc and /sys follow the level;
// without it, /proc is the kernel's.
func TestProcView(t *testing.T) {
	requires(t, "root", "cgroupns")
	needFUSE(t)
	needController(t, "memory", "cpu")
	host := hostMemTotal(t)
	cases := []struct {
		args []string
		want map[string]string
	}{
		{[]string{"--proc-view", "--cpus", "1", "--memory", "256M"},
			map[string]string{"cpuinfo": "1", "online": "0", "sendfile": "0", "statcpus": "1", "memtotal": "262144", "free": "256", "getconf": "1", "python": "1"}},
		{[]string{"--proc-view", "--user", "--pid", "--mount-proc", "--cpus", "1", "--memory", "256M"},
			map[string]string{"cpuinfo": "1", "online": "0", "memtotal": "262144", "free": "256"}},
		{nil, map[string]string{"memtotal": strconv.Itoa(host)}},
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(run(t, "nproc"))); n >= 2 {
		needController(t, "cpuset")
		cases = append(cases, struct {
			args []string
			want map[string]string
		}{[]string{"--proc-view", "--cpuset-cpus", "1"}, map[string]string{"cpuinfo": "1", "online": "0", "getconf": "1", "nproc": "1", "python": "1", "gonumcpu": "1 1"}})
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			noLeaks(t)
			_, self := openDir(t)
			r := clu(t, append(c.args, "--", "sh", "-c", "CLU_SELF="+self+"\n"+probeScript())...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got := parseKV(r.stdout)
			for k, want := range c.want {
				if v, ok := got[k]; ok && v != want || !ok && k != "python" && k != "getconf" && k != "nproc" && k != "free" && k != "sendfile" {
					t.Errorf("%s = %q, want %q (all: %v)", k, v, want, got)
				}
			}
			if len(c.args) > 0 {
				if top, ok := got["top"]; ok && slicesContain(c.args, "256M") && !topShows256M(top) {
					t.Errorf("top's memory line %q shows no 256 MiB total", top)
				}
				if up, _ := strconv.Atoi(got["uptime"]); up > 30 {
					t.Errorf("uptime inside %d s, want the level's (just started)", up)
				}
			}
		})
	}
}

// topShows256M reports whether top's memory line, procps's ("MiB Mem :
// 256.0 total, ...") or busybox's ("Mem: 636K used, 261508K free, ..."),
// shows a 256 MiB machine.
func topShows256M(line string) bool {
	if strings.Contains(line, "256.0 total") {
		return true
	}
	var used, free int
	_, err := fmt.Sscanf(line, "Mem: %dK used, %dK free", &used, &free)
	return err == nil && used+free == 262144
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, _ := exec.Command(name, args...).Output()
	return string(out)
}

// The view is keyed on the reader: a process the level moved to a child
// cgroup with a one-CPU cpuset, or a 0.5-CPU quota, sees one CPU while
// the rest of the level sees two.
func TestProcViewReader(t *testing.T) {
	requires(t, "root", "cgroupns", "2cpus")
	needFUSE(t)
	cs := needController(t, "cpuset", "cpu")
	noLeaks(t)
	dir, _ := openDir(t)
	set, quota := cs["cpuset"], cs["cpu"]
	procs := func(c *ctl) string {
		if c.v2 {
			return "cgroup.procs"
		}
		return "tasks"
	}
	mems := ""
	if !set.v2 {
		mems = "echo 0 > " + set.inside + "/one/cpuset.mems && "
	}
	quotaSet := "echo 50000 > " + quota.inside + "/half/cpu.cfs_quota_us"
	if quota.v2 {
		quotaSet = "echo '50000 100000' > " + quota.inside + "/half/cpu.max"
	}
	r := clu(t, "--proc-view", "--", "sh", "-c", strings.Join([]string{
		"grep -c ^processor /proc/cpuinfo > " + dir + "/all",
		"mkdir " + set.inside + "/one && " + mems + "echo 0 > " + set.inside + "/one/cpuset.cpus || exit 3",
		"sh -c 'echo $$ > " + set.inside + "/one/" + procs(set) + " && grep -c ^processor /proc/cpuinfo && cat /sys/devices/system/cpu/online' > " + dir + "/one",
		"mkdir -p " + quota.inside + "/half && " + quotaSet + " || exit 4",
		"sh -c 'echo $$ > " + quota.inside + "/half/" + procs(quota) + " && grep -c ^processor /proc/cpuinfo' > " + dir + "/half",
		"grep -c ^processor /proc/cpuinfo > " + dir + "/after",
	}, "\n"))
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for f, want := range map[string]string{"all": "2", "one": "1\n0", "half": "1", "after": "2"} {
		if got := mustRead(t, dir+"/"+f); got != want {
			t.Errorf("%s: %q, want %q", f, got, want)
		}
	}
}

// viewServer finds the view server of level name among the processes.
func viewServer(t *testing.T, name string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := bytes.Split(b, []byte{0})
		if len(args) > 1 && string(args[0]) == "cl-unshare [proc-view server]" && string(args[1]) == filepath.Join(runDir, "levels", name, "procview") {
			return pid
		}
	}
	return 0
}

// Never a broken /proc: when the view's server dies, the level's reads of
// /proc/meminfo are the kernel's again within a second, not ENOTCONN.
func TestProcViewServerDies(t *testing.T) {
	requires(t, "root", "cgroupns")
	needFUSE(t)
	needController(t, "memory")
	for _, user := range []bool{false, true} {
		t.Run(fmt.Sprintf("user=%v", user), func(t *testing.T) { serverDies(t, user) })
	}
}

func serverDies(t *testing.T, user bool) {
	noLeaks(t)
	args := []string{"--proc-view", "--memory", "128M"}
	if user {
		// The level's /proc is then its own, locked below the view.
		args = append(args, "--user", "--pid", "--mount-proc")
	}
	l := start(t, nil, append(args, "--", "sleep", "600")...)
	var srv int
	waitFor(t, "the level set up", func() bool {
		srv = viewServer(t, l.name)
		i := findInfo(listJSON(t), l.name)
		return srv != 0 && i != nil && i.CmdPID != 0
	})
	read := func() result { return cmd(t, "exec", l.name, "--", "awk", "/^MemTotal/ {print $2}", "/proc/meminfo") }
	if r := read(); strings.TrimSpace(r.stdout) != "131072" {
		t.Fatalf("MemTotal inside %q (%s), want the view's 131072", r.stdout, r.stderr)
	}
	if err := syscall.Kill(srv, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	host := strconv.Itoa(hostMemTotal(t))
	for {
		// Until the kernel's file is back: between the server's death
		// and the unbind, a read may fail (ENOTCONN), for at most a second.
		r := read()
		if r.code == 0 && strings.TrimSpace(r.stdout) == host {
			break
		}
		if time.Since(killed) > time.Second {
			t.Fatalf("a second after the server died, MemTotal inside: exit %d, %q %q; want the kernel's %s", r.code, r.stdout, r.stderr, host)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.stop(t)
}

// --proc-view where it cannot work: 125, one line, nothing made.
func TestProcViewBadInput(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"CL_UNSHARE_FAIL_AT=no fuse"}, []string{"--proc-view"}, "--proc-view: this kernel has no FUSE (load it: modprobe fuse)"},
		{[]string{"CL_UNSHARE_FAIL_AT=no /dev/fuse"}, []string{"--proc-view"}, "--proc-view: /dev/fuse: no such file or directory"},
	} {
		r := cluEnv(t, c.env, append(c.args, "--", "true")...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, %q; want 125 and one line with %q", c.env, c.args, r.code, r.stderr, c.want)
		}
	}
}

// With --root the view covers the new root's /proc (the new root has no
// /sys: that file is left alone).
func TestProcViewNewRoot(t *testing.T) {
	requires(t, "root", "cgroupns")
	needFUSE(t)
	needController(t, "memory")
	for _, user := range []bool{false, true} {
		t.Run(fmt.Sprintf("user=%v", user), func(t *testing.T) {
			noLeaks(t)
			dir, _ := openDir(t)
			root := busyboxRoot(t, dir)
			args := []string{"--proc-view", "--root", root, "--pid", "--mount-proc", "--memory", "64M"}
			if user {
				args = append(args, "--user")
			}
			r := clu(t, append(args, "--", "/bin/sh", "-c", "grep MemTotal /proc/meminfo")...)
			if f := strings.Fields(r.stdout); r.code != 0 || len(f) < 2 || f[1] != "65536" {
				t.Errorf("MemTotal in the new root: exit %d, %q %q; want 65536 kB", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// --exec has a view too, served by processes that outlive the exec; gc
// stops them with the level.
func TestProcViewExecInPlace(t *testing.T) {
	requires(t, "root", "cgroupns")
	needFUSE(t)
	needController(t, "memory")
	noLeaks(t)
	name := fmt.Sprintf("pvexec%d", os.Getpid())
	// No limit: --exec from a cgroup with other processes (this test's)
	// cannot enable controllers on cgroup v2; the view's files are there
	// all the same, served.
	r := clu(t, "--exec", "--name", name, "--proc-view", "--", "sh", "-c",
		"grep -c ' - fuse.clu-procview ' /proc/self/mountinfo; grep -c ^processor /proc/cpuinfo")
	t.Cleanup(func() { cmd(t, "gc", name) })
	ncpu := strconv.Itoa(runtime.NumCPU())
	if f := strings.Fields(r.stdout); r.code != 0 || len(f) != 2 || f[0] != "7" || f[1] != ncpu {
		t.Errorf("--exec --proc-view: exit %d, %q (%s), want the 7 files of the view and %s CPUs", r.code, r.stdout, r.stderr, ncpu)
	}
	if g := cmd(t, "gc", name); g.code != 0 {
		t.Errorf("gc: exit %d, %s", g.code, g.stderr)
	}
	waitFor(t, "the view's server gone with the level", func() bool { return viewServer(t, name) == 0 })
}

// Nested levels: one started with --proc-view in a level sees its own
// limits; one started without it, in a level that has the view, does
// too, as the outer view is keyed on the reader.
func TestProcViewNested(t *testing.T) {
	requires(t, "root", "cgroupns")
	needFUSE(t)
	needController(t, "memory")
	noLeaks(t)
	mem := "grep MemTotal /proc/meminfo | tr -s \\  | cut -d\\  -f2"
	for _, c := range []struct {
		outer, inner []string
		want         string
	}{
		{[]string{"--memory", "128M"}, []string{"--proc-view", "--memory", "64M"}, "outer=" + strconv.Itoa(hostMemTotal(t)) + " inner=65536"},
		{[]string{"--proc-view", "--memory", "128M"}, []string{"--memory", "64M"}, "outer=131072 inner=65536"},
	} {
		r := clu(t, append(c.outer, "--", "sh", "-c", "echo outer=$("+mem+") inner=$("+bin+" "+strings.Join(c.inner, " ")+" -- sh -c \""+mem+"\")")...)
		if got := strings.TrimSpace(r.stdout); r.code != 0 || got != c.want {
			t.Errorf("outer %v, inner %v: exit %d, %q (%s), want %q", c.outer, c.inner, r.code, got, r.stderr, c.want)
		}
	}
}
