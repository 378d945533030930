package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
)

// --set takes a controller's files, never a core file:
// cgroup.procs=PID moved an unrelated process into the level, and the
// level's teardown killed it.
func TestSetCoreFilesRefused(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	bystander := exec.Command("sleep", "600")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { bystander.Process.Kill(); bystander.Wait() }()
	before := procCgroups(t, bystander.Process.Pid)
	pid := strconv.Itoa(bystander.Process.Pid)
	for _, set := range []string{"cgroup.procs=" + pid, "cgroup.threads=" + pid, "cgroup.kill=1", "cgroup.freeze=1",
		"cgroup.subtree_control=+pids", "cgroup.type=threaded", "tasks=" + pid, "release_agent=/bin/x",
		"notify_on_release=1", "cgroup.clone_children=1"} {
		r := clu(t, "--set", set, "--", "true")
		if r.code != 125 || !oneLine(r.stderr, "--set: ") {
			t.Errorf("--set %s: exit %d, %q", set, r.code, r.stderr)
		}
	}
	if !alive(bystander.Process.Pid) || fmt.Sprint(procCgroups(t, bystander.Process.Pid)) != fmt.Sprint(before) {
		t.Errorf("the bystander was moved or killed: %v, was %v", procCgroups(t, bystander.Process.Pid), before)
	}
	// The Go API applies the same rule, before anything is made.
	_, err := lvl.Start(lvl.Config{Argv: []string{"true"}, CgroupParent: testParent,
		Limits: lvl.Limits{Set: []cgroup.Setting{{File: "cgroup.procs", Value: pid}}}})
	var fe *lvl.FieldError
	if !errors.As(err, &fe) || fe.Field != "Limits.Set" {
		t.Errorf("Start with cgroup.procs: %v, want a Limits.Set FieldError", err)
	}
	if v2 := hierarchy(t, "cgroup2"); v2 != nil {
		if r := clu(t, "--set", "cgroup.max.descendants=5", "--", "/bin/sh", "-c", "cat /sys/fs/cgroup"+v2.Mount[len("/sys/fs/cgroup"):]+"/cgroup.max.descendants"); r.code != 0 || r.stdout != "5\n" {
			t.Errorf("--set cgroup.max.descendants=5: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}
	}
}

// --name "" is a mistake (a script's unset variable),
// not a request for a generated name.
func TestEmptyName(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, args := range [][]string{{"--name", ""}, {"--name="}} {
		c := exec.Command(bin, append(args, "--", "true")...)
		out, _ := c.CombinedOutput()
		if c.ProcessState.ExitCode() != 125 || !oneLine(string(out), "--name: empty name") {
			t.Errorf("%q: exit %d, %q", args, c.ProcessState.ExitCode(), out)
		}
	}
}

// An --exec level whose CMD ended gives its name back to
// the next start (a service manager's restart), and gc NAME collects just
// that level.
func TestExecRestart(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	name := fmt.Sprintf("svc-%d", os.Getpid())
	defer cmd(t, "gc", name)
	for i := 0; i < 5; i++ {
		// Each run is a real level: it sees itself as /, runs with
		// cl-unshare's PID in the level's own cgroup, and exits 0.
		c := exec.Command(bin, "--exec", "--name", name, "--cgroup-parent", testParent, "--", "/bin/sh", "-c",
			fmt.Sprintf("cat /proc/self/cgroup > %s/cg%d; echo $$ > %s/pid%d; while [ ! -e %s/go%d ]; do sleep 0.01; done", dir, i, dir, i, dir, i))
		var out strings.Builder
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if pid := pidOf(t, nil, fmt.Sprintf("%s/pid%d", dir, i)); pid != c.Process.Pid {
			t.Errorf("start %d: CMD is PID %d, cl-unshare was %d", i+1, pid, c.Process.Pid)
		}
		r := cmd(t, "inspect", "--json", name)
		var in lvl.Info
		if err := json.Unmarshal([]byte(r.stdout), &in); err != nil || in.CmdPID != c.Process.Pid || in.State != lvl.Running {
			t.Errorf("start %d: inspect: %v: %s %s", i+1, err, r.stdout, r.stderr)
		} else if st, err := os.Stat(in.InnerCgroup); err != nil || !st.IsDir() {
			t.Errorf("start %d: inner cgroup %q: %v", i+1, in.InnerCgroup, err)
		}
		os.WriteFile(fmt.Sprintf("%s/go%d", dir, i), nil, 0o644)
		if err := c.Wait(); err != nil {
			t.Fatalf("start %d of --exec --name %s: %v: %s", i+1, name, err, out.String())
		}
		for _, line := range strings.Split(strings.TrimSpace(mustRead(t, fmt.Sprintf("%s/cg%d", dir, i))), "\n") {
			if !ownLine(line) {
				t.Errorf("start %d sees %q", i+1, line)
			}
		}
	}
	if i := findInfo(listJSON(t), name); i == nil || i.State != lvl.Exited {
		t.Errorf("after the last run: %+v, want one exited level", i)
	}
	other := start(t, nil, script("echo $$ > "+dir+"/other", "sleep 600")...)
	pidOf(t, other, dir+"/other")
	r := cmd(t, "gc", name)
	if r.code != 0 || !strings.Contains(r.stdout, "removed level "+name) || strings.Contains(r.stdout, other.name) {
		t.Errorf("gc %s: exit %d: %q %s", name, r.code, r.stdout, r.stderr)
	}
	if r := cmd(t, "gc", name); r.code != 125 || !oneLine(r.stderr, "no level named") {
		t.Errorf("gc %s again: exit %d, %q", name, r.code, r.stderr)
	}
	if r := cmd(t, "gc", other.name); r.code != 125 || !oneLine(r.stderr, "supervisor") || !other.running() {
		t.Errorf("gc of a running level: exit %d, %q", r.code, r.stderr)
	}
	other.stop(t)
}

// A level with a process left is never collected by a
// start that wants its name.
func TestRestartKeepsLiveLevel(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	name := fmt.Sprintf("svc2-%d", os.Getpid())
	defer cmd(t, "gc", name)
	c := exec.Command(bin, "--exec", "--name", name, "--cgroup-parent", testParent, "--", "/bin/sh", "-c",
		"sleep 600 >/dev/null 2>&1 & echo $! > "+dir+"/left")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	left := pidOf(t, nil, dir+"/left")
	r := clu(t, "--exec", "--name", name, "--", "true")
	if r.code != 125 || !oneLine(r.stderr, "already in use (processes are left in its cgroups") {
		t.Errorf("restart over a level with a live process: exit %d, %q", r.code, r.stderr)
	}
	if !alive(left) {
		t.Fatalf("the restart killed the level's process %d", left)
	}
	if r := cmd(t, "gc", name); r.code != 0 || !strings.Contains(r.stdout, "killed 1 processes") {
		t.Errorf("gc %s: exit %d: %q %s", name, r.code, r.stdout, r.stderr)
	}
	waitFor(t, "the left process to die", func() bool { return !alive(left) })
}

// cl-unshare gc PARENT/CHILD collects a nested level whose
// supervisor died, and nothing else.
func TestGCNested(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, script(bin+" --name inner -- /bin/sh -c 'echo $$ > "+dir+"/inner; exec sleep 600' & echo $! > "+dir+"/sup", "sleep 600")...)
	sup := pidOf(t, l, dir+"/sup")
	ipid := pidOf(t, l, dir+"/inner")
	if r := cmd(t, "gc", l.name+"/inner"); r.code != 125 || !oneLine(r.stderr, "supervisor") {
		t.Errorf("gc of a nested level with a live supervisor: exit %d, %q", r.code, r.stderr)
	}
	syscall.Kill(sup, syscall.SIGKILL)
	waitFor(t, "the nested supervisor to be gone", func() bool {
		i := findInfo(listJSON(t), l.name)
		return i != nil && len(i.Levels) == 1 && i.Levels[0].SupervisorPID == 0
	})
	if i := findInfo(listJSON(t), l.name); i.Levels[0].State != lvl.Orphaned {
		t.Errorf("the nested level: %+v, want orphaned", i.Levels[0])
	}
	r := cmd(t, "gc", l.name+"/inner")
	if r.code != 0 || !strings.Contains(r.stdout, "removed level "+l.name+"/inner") {
		t.Fatalf("gc %s/inner: exit %d: %q %s", l.name, r.code, r.stdout, r.stderr)
	}
	waitFor(t, "the nested level's process to die", func() bool { return !alive(ipid) })
	if i := findInfo(listJSON(t), l.name); i == nil || len(i.Levels) != 0 || i.State != lvl.Running {
		t.Errorf("after gc: %+v", i)
	}
	l.stop(t)
}

// A value the host refuses gets a message naming the
// flag, the value and what this host takes, and leaves nothing behind.
func TestMessagesSayWhatWorks(t *testing.T) {
	requires(t, "root", "cgroupns")
	cs := needController(t, "memory", "cpuset")
	noLeaks(t)
	wrong, right := "memory.max", "memory.limit_in_bytes"
	if cs["memory"].v2 {
		wrong, right = right, wrong
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--set", wrong + "=1G"}, []string{"--set " + wrong + ": " + wrong + " does not exist here", "the file for it is " + right}},
		{[]string{"--set", "memory.bogus=1"}, []string{"memory.bogus does not exist here", "whose files here are", right}},
		{[]string{"--cpuset-cpus", "99"}, []string{`--cpuset-cpus: CPUs "99" are not all available to the level`, "has 0"}},
		{[]string{"--cpuset-mems", "7"}, []string{`--cpuset-mems: memory nodes "7" are not all available`, "has 0"}},
		{[]string{"--cpus", "1e9"}, []string{`--cpus: invalid CPU quota "1e9"`, "from 0.01 to 1000000"}},
		{[]string{"--memory", "1"}, []string{"--memory", "below what the level needs to start", "at least a few MiB"}},
		{[]string{"--set", "nosuch.max=1"}, []string{"the nosuch controller is not available here"}},
	} {
		r := clu(t, append(c.args, "--", "true")...)
		ok := r.code == 125 && oneLine(r.stderr, "")
		for _, w := range c.want {
			ok = ok && strings.Contains(r.stderr, w)
		}
		if !ok {
			t.Errorf("%v: exit %d, %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// Inside a level each cgroup filesystem is mounted once,
// at /sys/fs/cgroup, as on a host (tools take the first they find), and
// the host's mirror still shows it.
func TestCgroupMountedOnce(t *testing.T) {
	requires(t, "root", "cgroupns")
	for _, args := range [][]string{nil, {"--user"}} {
		t.Run(fmt.Sprintf("%v", args), func(t *testing.T) {
			noLeaks(t)
			r := clu(t, append(args, "--", "/bin/sh", "-c", "cat /proc/self/mountinfo")...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			infos, err := mounts.Parse(strings.NewReader(r.stdout))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string][]string{}
			for _, m := range infos {
				if m.FSType == "cgroup" || m.FSType == "cgroup2" {
					key := fmt.Sprintf("%d:%d", m.Major, m.Minor)
					seen[key] = append(seen[key], m.Mountpoint)
				}
			}
			if len(seen) != len(hierarchies(t)) {
				t.Errorf("the level has %d cgroup filesystems, the host %d: %v", len(seen), len(hierarchies(t)), seen)
			}
			for sb, at := range seen {
				if len(at) != 1 || !mounts.Under(at[0], mounts.CgroupRoot) {
					t.Errorf("cgroup filesystem %s is mounted at %v, want once below /sys/fs/cgroup", sb, at)
				}
			}
		})
	}
}

// In every --user level (-r as root too, where the
// level's root is host uid 0) the root's limit files refuse writes; and
// inspect's enforcement says, per mode and layout, whether a write fails
// or only has no effect, which the write itself shows.
func TestEnforcementTruth(t *testing.T) {
	requires(t, "root", "cgroupns")
	cs := needController(t, "pids")
	for _, args := range [][]string{nil, {"--user"}, {"--user", "-r"}} {
		t.Run(fmt.Sprintf("%v", args), func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			os.Chmod(dir, 0o777)
			os.Chmod(filepath.Dir(dir), 0o755)
			l := start(t, nil, append(append([]string{"--pids-max", "40"}, args...), script(
				fmt.Sprintf("echo 1000 > %s/pids.max 2>/dev/null; echo $? > %s/wrote", cs["pids"].inside, dir),
				"echo $$ > "+dir+"/pid", "sleep 600")...)...)
			pidOf(t, l, dir+"/pid")
			failed := mustRead(t, dir+"/wrote") != "0"
			r := cmd(t, "inspect", "--json", l.name)
			var in lvl.Info
			if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
				t.Fatalf("inspect: %v: %s", err, r.stderr)
			}
			e := in.Enforcement
			var says bool // whether it says the write fails
			switch {
			case args != nil:
				says = strings.Contains(e, "fail (EACCES)")
			case cs["pids"].v2:
				says = strings.Contains(e, "on cgroup2 they fail")
				if !says && !strings.Contains(e, "on cgroup2 they succeed") {
					t.Errorf("enforcement says nothing of cgroup2: %q", e)
				}
			default:
				says = !strings.Contains(e, "on cgroup v1 they succeed")
			}
			if args != nil && !failed {
				t.Errorf("a write to the root's pids.max succeeded in a %v level", args)
			}
			if failed != says {
				t.Errorf("the write failed=%v, but enforcement says %q", failed, e)
			}
			if got := mustRead(t, filepath.Join(outer(cs["pids"].h, l.name), "pids.max")); got != "40" {
				t.Errorf("the outer pids.max is %s", got)
			}
			l.stop(t)
		})
	}
}
