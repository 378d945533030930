package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"golang.org/x/sys/unix"
)

// cmd runs a cl-unshare subcommand to completion.
func cmd(t *testing.T, args ...string) result {
	t.Helper()
	c := exec.Command(bin, args...)
	var out, errb strings.Builder
	c.Stdout, c.Stderr = &out, &errb
	c.Run()
	return result{code: c.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

func listJSON(t *testing.T) []lvl.Info {
	t.Helper()
	r := cmd(t, "list", "--json")
	if r.code != 0 {
		t.Fatalf("list --json: exit %d: %s", r.code, r.stderr)
	}
	var ls []lvl.Info
	if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil {
		t.Fatalf("list --json: %v: %s", err, r.stdout)
	}
	return ls
}

func findInfo(ls []lvl.Info, name string) *lvl.Info {
	for i := range ls {
		if ls[i].Name == name {
			return &ls[i]
		}
	}
	return nil
}

// DESIGN contract 6: levels nest four deep; each sees itself as / and none of
// its ancestors; the host sees every mirror; limits are bounded by the
// parent's.
func TestNestingDepth4(t *testing.T) {
	requires(t, "root", "cgroupns")
	cs := needController(t, "memory")
	noLeaks(t)
	dir := t.TempDir()
	self, _ := os.Executable()
	// Innermost: report, wait. Each outer level runs the next one. The
	// hog is made the OOM killer's first choice: the three nested
	// supervisors share the 32M too, and the killer once took one of
	// them (a TCG guest), ending the tree with 137.
	inner := fmt.Sprintf("cat /proc/self/cgroup > %s/cg; ls -R /run/cl-unshare > %s/run; "+
		"cat /proc/self/mountinfo > %s/mi; sh -c 'echo 1000 > /proc/self/oom_score_adj; CLU_HELPER=hog exec %s 64'; echo $? > %s/hog; "+
		"echo ok > %s/ready; while [ ! -e %s/go ]; do sleep 0.01; done", dir, dir, dir, self, dir, dir, dir)
	cmdline := inner
	for d := 4; d >= 2; d-- {
		extra := ""
		if d == 2 {
			extra = " --memory 1G" // more than the parent's 32M
		}
		cmdline = fmt.Sprintf("exec %s --name n%d%s -- /bin/sh -c %s", bin, d, extra, shQuote(cmdline))
	}
	l := start(t, nil, "--name", "n1-"+strconv.Itoa(os.Getpid()), "--memory", "32M", "--", "/bin/sh", "-c", cmdline)
	waitFile(t, l, dir+"/ready")
	for _, line := range strings.Split(strings.TrimSpace(mustRead(t, dir+"/cg")), "\n") {
		if !ownLine(line) {
			t.Errorf("depth 4 sees %q, want :/ (0::/init)", line)
		}
	}
	run := mustRead(t, dir+"/run")
	for _, n := range []string{l.name, "n2", "n3", "n4"} {
		if strings.Contains(run, n) {
			t.Errorf("depth 4's run directory shows %s:\n%s", n, run)
		}
	}
	mi := mustRead(t, dir+"/mi")
	for _, n := range []string{l.name, "n2", "n3"} {
		if strings.Contains(mi, "/"+n+"/") || strings.Contains(mi, "/"+n+" ") {
			t.Errorf("depth 4's mountinfo names ancestor %s", n)
		}
	}
	if got := strings.TrimSpace(mustRead(t, dir+"/hog")); got != "137" {
		t.Errorf("a 64M hog at depth 4 under a 32M top level exited %s, want 137", got)
	}
	// The host sees every descendant's mirror.
	mirror := filepath.Join(runDir, "levels", l.name, "levels", "n2", "levels", "n3", "levels", "n4", "cgroup")
	found := false
	for _, m := range mountLines(t, "self") {
		if strings.HasPrefix(m, mirror+" ") || strings.HasPrefix(m, mirror+"/") {
			found = true
		}
	}
	if !found {
		t.Errorf("no mirror of depth 4 at %s on the host", mirror)
	}
	// list shows the tree.
	top := findInfo(listJSON(t), l.name)
	names := []string{}
	for i := top; i != nil; {
		names = append(names, i.Name)
		if len(i.Levels) == 0 {
			break
		}
		i = &i.Levels[0]
	}
	if strings.Join(names, "/") != l.name+"/n2/n3/n4" {
		t.Errorf("list shows the tree %v", names)
	}
	if r := cmd(t, "inspect", l.name+"/n2/n3/n4"); r.code != 0 || !strings.Contains(r.stdout, "name:        n4") {
		t.Errorf("inspect of depth 4: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	_ = cs
	os.WriteFile(dir+"/go", nil, 0o644)
	if r := l.wait(t); r.code != 0 {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// DESIGN contract 7: siblings never see each other.
func TestSiblingsInvisible(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	b := start(t, nil, script("echo $$ > "+dir+"/b", "sleep 600")...)
	pidOf(t, b, dir+"/b")
	a := start(t, nil, script(
		bin+" list > "+dir+"/list 2>&1",
		bin+" inspect "+b.name+" > "+dir+"/inspect 2>&1; echo $? > "+dir+"/inspect.code",
		"ls -R /run/cl-unshare /sys/fs/cgroup > "+dir+"/ls 2>&1",
		"echo done > "+dir+"/done")...)
	waitFile(t, a, dir+"/done")
	if strings.Contains(mustRead(t, dir+"/list"), b.name) || strings.Contains(mustRead(t, dir+"/ls"), b.name) {
		t.Errorf("a level sees its sibling %s", b.name)
	}
	if code := mustRead(t, dir+"/inspect.code"); code != "125" || !strings.Contains(mustRead(t, dir+"/inspect"), "no level named") {
		t.Errorf("inspect of a sibling from inside: exit %s: %s", code, mustRead(t, dir+"/inspect"))
	}
	a.wait(t)
	b.stop(t)
}

// List and inspect, checked against the kernel.
func TestListInspect(t *testing.T) {
	requires(t, "root", "cgroupns")
	cs := needController(t, "pids")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, append([]string{"--pids-max", "77"}, script("echo $$ > "+dir+"/pid", "sleep 600")...)...)
	pid := pidOf(t, l, dir+"/pid")
	i := findInfo(listJSON(t), l.name)
	if i == nil {
		t.Fatalf("list does not show %s", l.name)
	}
	if i.State != lvl.Running || i.SupervisorPID != l.cmd.Process.Pid || i.CmdPID != pid {
		t.Errorf("list: state %s supervisor %d cmd %d; want running %d %d", i.State, i.SupervisorPID, i.CmdPID, l.cmd.Process.Pid, pid)
	}
	if i.Limits["pids.max"] != "77" {
		t.Errorf("list limits %v, want pids.max=77", i.Limits)
	}
	if st, err := os.Stat(i.InnerCgroup); err != nil || !st.IsDir() {
		t.Errorf("inner cgroup %q: %v", i.InnerCgroup, err)
	}
	mirrored := 0
	for _, m := range mountLines(t, "self") {
		if strings.HasPrefix(m, filepath.Join(runDir, "levels", l.name, "cgroup")) {
			mirrored++
		}
	}
	if i.MirrorMounts != mirrored || mirrored == 0 {
		t.Errorf("list says %d mirrored mounts, mountinfo has %d", i.MirrorMounts, mirrored)
	}
	if r := cmd(t, "list"); !strings.Contains(r.stdout, l.name) || !strings.Contains(r.stdout, "running") {
		t.Errorf("list:\n%s", r.stdout)
	}
	if r := cmd(t, "ps"); !strings.Contains(r.stdout, l.name) {
		t.Errorf("ps:\n%s", r.stdout)
	}
	r := cmd(t, "inspect", "--json", l.name)
	var in lvl.Info
	if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
		t.Fatalf("inspect --json: %v: %s %s", err, r.stdout, r.stderr)
	}
	if len(in.Cgroups) != len(hierarchies(t)) {
		t.Errorf("inspect shows %d hierarchies, host has %d", len(in.Cgroups), len(hierarchies(t)))
	}
	if got := mustRead(t, filepath.Join(in.Cgroups[cs["pids"].h.Name()].Outer, "pids.max")); got != "77" {
		t.Errorf("outer pids.max per inspect's path = %s", got)
	}
	var st unix.Stat_t
	unix.Stat(fmt.Sprintf("/proc/%d/ns/cgroup", pid), &st)
	if in.Namespaces == nil || in.Namespaces.Cgroup != st.Ino {
		t.Errorf("inspect namespaces %+v, cgroup ns inode %d", in.Namespaces, st.Ino)
	}
	if in.Usage == nil || in.Usage.Tasks < 1 || in.Enforcement == "" || len(in.Mirror) != mirrored {
		t.Errorf("inspect usage %+v enforcement %q mirror %d", in.Usage, in.Enforcement, len(in.Mirror))
	}
	if r := cmd(t, "inspect", "no-such-level"); r.code != 125 || !oneLine(r.stderr, "no level named") {
		t.Errorf("inspect of an unknown level: exit %d, %q", r.code, r.stderr)
	}
	l.stop(t)
}

// cl-unshare exec runs CMD in the level's cgroups and namespaces.
func TestExec(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	h := hierarchies(t)[0]
	sub := filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(h.Mount, "/sys/fs/cgroup"), "sub")
	l := start(t, nil, script("mkdir "+sub, "echo $$ > "+dir+"/pid", "sleep 600")...)
	pid := pidOf(t, l, dir+"/pid")
	r := cmd(t, "exec", l.name, "--", "/bin/sh", "-c", "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup; readlink /proc/self/ns/mnt; exit 7")
	if r.code != 7 {
		t.Fatalf("exec: exit %d, want 7: %s", r.code, r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line != "" && line[0] >= '0' && line[0] <= '9' && !ownLine(line) {
			t.Errorf("exec'd CMD sees %q", line)
		}
	}
	for _, ns := range []string{"cgroup", "mnt"} {
		if want := readlink(t, fmt.Sprintf("/proc/%d/ns/%s", pid, ns)); !strings.Contains(r.stdout, want) {
			t.Errorf("exec'd CMD is not in the level's %s namespace %s", ns, want)
		}
	}
	// It counts in the level: the host sees it in the inner cgroups (sub).
	e := exec.Command(bin, "exec", "--cgroup", "sub", l.name, "--", "/bin/sh", "-c", "echo $$ > "+dir+"/epid; exec sleep 600")
	e.Start()
	defer func() { e.Process.Kill(); e.Wait() }()
	epid := pidOf(t, nil, dir+"/epid")
	got := procCgroups(t, epid)[h.Name()]
	if want := filepath.Join(strings.TrimSuffix(procCgroups(t, pid)[h.Name()], "/"+lvl.DefaultLeaf), "sub"); got != want {
		t.Errorf("exec --cgroup sub: process in %s, want %s", got, want)
	}
	if r := cmd(t, "exec", l.name, "--", "no-such-cmd-xyz"); r.code != 127 {
		t.Errorf("exec of a missing command: exit %d: %s", r.code, r.stderr)
	}
	if r := cmd(t, "exec", "no-such-level", "--", "true"); r.code != 125 || !oneLine(r.stderr, "no level named") {
		t.Errorf("exec into an unknown level: exit %d, %q", r.code, r.stderr)
	}
	l.stop(t)
}

// Kill, freeze and thaw, covering nested levels.
func TestKillFreezeThaw(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	self, _ := os.Executable()
	nested := fmt.Sprintf("CLU_HELPER=ticker %s %s/tick", self, dir)
	l := start(t, nil, script(
		"trap 'echo term > "+dir+"/term; exit 42' TERM",
		"echo $$ > "+dir+"/pid",
		bin+" --name inner -- /bin/sh -c "+shQuote(nested)+" &",
		"while :; do sleep 0.01; done")...)
	pidOf(t, l, dir+"/pid")
	waitFile(t, l, dir+"/tick")
	if r := cmd(t, "freeze", l.name); r.code != 0 {
		t.Fatalf("freeze: exit %d: %s", r.code, r.stderr)
	}
	if i := findInfo(listJSON(t), l.name); i == nil || i.State != lvl.Frozen {
		t.Errorf("list after freeze: %+v", i)
	}
	a := mustRead(t, dir+"/tick")
	time.Sleep(100 * time.Millisecond)
	if b := mustRead(t, dir+"/tick"); a != b {
		t.Errorf("the nested level's ticker ran on while its parent was frozen: %s -> %s", a, b)
	}
	if r := cmd(t, "thaw", l.name); r.code != 0 {
		t.Fatalf("thaw: exit %d: %s", r.code, r.stderr)
	}
	waitFor(t, "ticker to resume", func() bool { return mustRead(t, dir+"/tick") != a })
	if r := cmd(t, "kill", l.name, "--signal", "BOGUS"); r.code != 125 || !oneLine(r.stderr, `unknown signal "BOGUS"`) {
		t.Errorf("kill --signal BOGUS: exit %d, %q", r.code, r.stderr)
	}
	if r := cmd(t, "kill", l.name, "--signal", "TERM"); r.code != 0 {
		t.Fatalf("kill --signal TERM: exit %d: %s", r.code, r.stderr)
	}
	if r := l.wait(t); r.code != 42 && r.code != 143 {
		t.Errorf("after kill --signal TERM the level exited %d", r.code)
	}
	// SIGKILL through cgroup.kill, nested levels included.
	l2 := start(t, nil, script("echo $$ > "+dir+"/pid2", bin+" --name inner2 -- sleep 600 &", "sleep 600")...)
	pidOf(t, l2, dir+"/pid2")
	waitFor(t, "nested level", func() bool { i := findInfo(listJSON(t), l2.name); return i != nil && len(i.Levels) == 1 })
	if r := cmd(t, "kill", l2.name); r.code != 0 {
		t.Fatalf("kill: exit %d: %s", r.code, r.stderr)
	}
	if r := l2.wait(t); r.code != 137 {
		t.Errorf("after kill the level exited %d, want 137", r.code)
	}
}

// cl-unshare gc collects levels whose supervisor is gone, only those,
// idempotently, without following what a level planted in its run dir.
func TestGC(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.Mkdir(victim, 0o755)
	os.WriteFile(filepath.Join(victim, "keep"), []byte("x"), 0o644)
	live := start(t, nil, script("echo $$ > "+dir+"/live", "sleep 600")...)
	pidOf(t, live, dir+"/live")
	orphan := start(t, nil, script(
		"ln -s "+victim+" /run/cl-unshare/evil",
		"mkdir /run/cl-unshare/levels/fake && ln -s "+victim+" /run/cl-unshare/levels/fake/cgroup",
		"mkdir -p /tmp/clu-gc-mnt-$$ && mount -t tmpfs planted /run/cl-unshare/levels/fake 2>/dev/null",
		"echo $$ > "+dir+"/orphan", "sleep 600")...)
	opid := pidOf(t, orphan, dir+"/orphan")
	orphan.cmd.Process.Kill() // the supervisor dies; the level stays
	<-orphan.done
	if i := findInfo(listJSON(t), orphan.name); i == nil || i.State != lvl.Orphaned {
		t.Errorf("list after the supervisor died: %+v", i)
	}
	r := cmd(t, "gc")
	if r.code != 0 || !strings.Contains(r.stdout, "removed level "+orphan.name) {
		t.Fatalf("gc: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, live.name) || !live.running() {
		t.Errorf("gc touched a level with a live supervisor: %s", r.stdout)
	}
	if alive(opid) {
		t.Errorf("gc left the orphan's process %d", opid)
	}
	if _, err := os.Stat(filepath.Join(victim, "keep")); err != nil {
		t.Errorf("gc followed a planted link: %v", err)
	}
	if r := cmd(t, "gc"); r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("second gc: exit %d, %q", r.code, r.stdout)
	}
	live.stop(t)
}

// cl-unshare check reports and says whether a level can start.
func TestCheck(t *testing.T) {
	requires(t, "root", "cgroupns")
	r := cmd(t, "check", "--json")
	var rep lvl.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check --json: %v: %s", err, r.stdout)
	}
	if r.code != 0 || !rep.CanStart || rep.Layout == "" || !rep.Features["cgroup_namespaces"] || len(rep.Hierarchies) != len(hierarchies(t)) {
		t.Errorf("check: exit %d, %+v %s", r.code, rep, r.stderr)
	}
	if got := rep.Features["nsdelegate"]; got != nsdelegate(t) {
		t.Errorf("check says nsdelegate=%v", got)
	}
	c := exec.Command(bin, "check")
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := c.CombinedOutput()
	// A user who is not root, in a cgroup no one delegated to them.
	want := "no cgroup is delegated to you"
	if hierarchy(t, "cgroup2") == nil {
		want = "this host has no cgroup v2 hierarchy"
	}
	if c.ProcessState.ExitCode() != 125 || !strings.Contains(string(out), want) {
		t.Errorf("check as nobody: exit %d: %s", c.ProcessState.ExitCode(), out)
	}
}
