package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/procview"
)

// user is the id rootless tests run cl-unshare as: the first one useradd
// hands out, as a developer's own account would be.
const user = 1000

// delegated makes a cgroup2 cgroup below the test parent and delegates it
// to user the way the kernel documents (cgroup-v2.rst, "Delegation") and
// systemd does for Delegate=yes: the directory and the files listed in
// /sys/kernel/cgroup/delegate chowned, nothing else. It offers the
// cgroup every controller the test parent has, and is removed, with
// whatever was made in it, when the test ends.
func delegated(t *testing.T, chown bool) string {
	t.Helper()
	h := hierarchy(t, "cgroup2")
	parent := h.Dir(filepath.Join(cgroup.Base(*h), testParent))
	if err := os.Mkdir(parent, 0o755); err == nil {
		t.Cleanup(func() { os.Remove(parent) })
	} else if !os.IsExist(err) {
		t.Fatal(err)
	}
	have, _ := cgroup.Fields(parent, "cgroup.controllers")
	for _, c := range have {
		_ = cgroup.WriteFile(parent, "cgroup.subtree_control", "+"+c)
	}
	dir, err := os.MkdirTemp(parent, "rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTree(t, dir) })
	if chown {
		files := []string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control"}
		if b, err := os.ReadFile("/sys/kernel/cgroup/delegate"); err == nil {
			files = strings.Fields(string(b))
		}
		for _, f := range append([]string{""}, files...) {
			if err := os.Chown(filepath.Join(dir, f), user, user); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// removeTree kills what is left in cgroup dir (only processes the test
// started are there) and removes it, children first.
func removeTree(t *testing.T, dir string) {
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	var dirs []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for _, d := range slices.Backward(dirs) {
		for os.Remove(d) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s is left", d)
		}
	}
}

// cliLeaf is a leaf of delegated cgroup dir, the user's, for the
// commands the user runs beside their levels (list, exec, kill): once a
// level enabled controllers in dir, no process may be in dir itself, and
// exec moves its command from the caller's cgroup into the level's,
// which the kernel allows only within a subtree the caller owns.
func cliLeaf(t *testing.T, dir string) string {
	t.Helper()
	leaf := filepath.Join(dir, "cli")
	if err := os.Mkdir(leaf, 0o755); os.IsExist(err) {
		return leaf
	} else if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(leaf, f), user, user); err != nil {
			t.Fatal(err)
		}
	}
	return leaf
}

// runtimeDir is a $XDG_RUNTIME_DIR of user's, removed when the test ends.
func runtimeDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "clu-xdg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, user, user); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asUser starts cl-unshare ARGS as user, in cgroup dir, with runtime
// directory xdg.
func asUser(t *testing.T, dir, xdg string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{dir, fmt.Sprint(user), bin}, args...)...)
	cmd.Env = append(os.Environ(), "CLU_HELPER=asuser", "XDG_RUNTIME_DIR="+xdg, "HOME=/")
	cmd.Dir = "/"
	return cmd
}

// startUntil starts cmd, its output to out and errb, and waits until it
// has made file ready; it kills cmd when the test ends.
func startUntil(t *testing.T, cmd *exec.Cmd, ready string, out, errb *bytes.Buffer) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the level did not start: %s%s", out.String(), errb.String())
		}
	}
}

// runAsUser runs cl-unshare ARGS as user to the end.
func runAsUser(t *testing.T, dir, xdg string, args ...string) result {
	t.Helper()
	cmd := asUser(t, dir, xdg, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if e, ok := err.(*exec.ExitError); ok {
		code = e.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// A user who is not root gets a level in the cgroup delegated to them:
// its own user namespace (they are its root), cgroup namespace and
// /sys/fs/cgroup, limits on its outer cgroup, and a mirror they can read
// at RUN/levels/NAME/cgroup; list and kill work on it; nothing is left.
func TestRootless(t *testing.T) {
	rootlessHost(t)
	noLeaks(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	run := filepath.Join(xdg, "cl-unshare")
	have, _ := cgroup.Fields(dir, "cgroup.controllers")
	var limits []string
	want := map[string]string{} // outer cgroup file -> what the limits make it
	if slices.Contains(have, "memory") && slices.Contains(have, "pids") {
		limits = []string{"--memory", "64M", "--pids-max", "40", "--set", "memory.high=48M", "--oom-group"}
		want["memory.max"], want["pids.max"], want["memory.high"], want["memory.oom.group"] = "67108864", "40", "50331648", "1"
		if slices.Contains(have, "cpu") {
			limits = append(limits, "--cpus", "0.5", "--cpu-weight", "50")
			want["cpu.max"], want["cpu.weight"] = "50000 100000", "50"
		}
		if slices.Contains(have, "cpuset") {
			limits = append(limits, "--cpuset-cpus", "0", "--cpuset-mems", "0")
			want["cpuset.cpus"], want["cpuset.mems"] = "0", "0"
		}
	} else {
		// A hybrid host's cgroup2 has no controllers: a limit is refused,
		// naming the cgroup that would have to offer it.
		r := runAsUser(t, dir, xdg, "--memory", "64M", "--", "true")
		if r.code != 125 || !oneLine(r.stderr, "--memory: the memory controller is not delegated to you: your cgroup "+dir) {
			t.Errorf("--memory without the memory controller: exit %d, %q", r.code, r.stderr)
		}
	}
	ready := filepath.Join(xdg, "ready")
	// A cgroupfs mounted after the start (over a child cgroup, extra)
	// shows the level's own root, made-inside and all, to the user.
	script := fmt.Sprintf(`id -u; tail -n 1 /proc/self/cgroup; mkdir /sys/fs/cgroup/made-inside /sys/fs/cgroup/extra && mount -t cgroup2 none /sys/fs/cgroup/extra && touch %s && sleep 60`, ready)
	cmd := asUser(t, dir, xdg, append(append([]string{"--name", "rl"}, limits...), "--", "sh", "-c", script)...)
	var out, errb bytes.Buffer
	startUntil(t, cmd, ready, &out, &errb)
	// The host side, as the user sees it.
	mirror := filepath.Join(run, "levels", "rl", "cgroup")
	// The launcher copies the level's mounts to its own mirror soon after
	// (package mirror), and the links show that.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := os.Stat(filepath.Join(mirror, "extra", "made-inside", "cgroup.procs"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the mirror %s does not show the level's own cgroup: %v", mirror, err)
			break
		}
	}
	outer := filepath.Join(dir, "rl")
	for f, v := range want {
		if b, _ := os.ReadFile(filepath.Join(outer, f)); strings.TrimSpace(string(b)) != v {
			t.Errorf("outer %s = %q, want %q", f, b, v)
		}
	}
	if _, err := os.Stat(outer); err != nil {
		t.Errorf("no outer cgroup at %s: %v", outer, err)
	}
	cli := cliLeaf(t, dir)
	if r := runAsUser(t, cli, xdg, "list"); r.code != 0 || !strings.Contains(r.stdout, "rl ") {
		t.Errorf("list as the user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runAsUser(t, cli, xdg, "inspect", "rl"); r.code != 0 || !strings.Contains(r.stdout, "rootless") {
		t.Errorf("inspect as the user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// exec enters the level's user namespace too (the user may enter no
	// other without it), and its cgroups.
	// As for any --user level, as its root with no capabilities.
	r := runAsUser(t, cli, xdg, "exec", "rl", "--", "sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/mnt; tail -n 1 /proc/self/cgroup; grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status")
	var cmdPID int
	if b, err := os.ReadFile(filepath.Join(outer, "level", "init", "cgroup.procs")); err == nil {
		fmt.Sscan(string(b), &cmdPID)
	}
	nsOf := func(kind string) string { l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", cmdPID, kind)); return l }
	if want := fmt.Sprintf("0\n%s\n%s\n0::/init\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\n", nsOf("user"), nsOf("mnt")); r.code != 0 || cmdPID == 0 || r.stdout != want {
		t.Errorf("exec as the user: exit %d, %q %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	// Root acts on no level recorded in the user's run directory: the
	// records are the user's to write, and would have it exec as host
	// uid 0 in the user's mounts, or kill any cgroup.
	for _, args := range [][]string{{"exec", "rl", "--", "id", "-u"}, {"kill", "rl"}, {"gc"}, {"--", "true"}} {
		if r := clu(t, append([]string{"--run-dir", run}, args...)...); r.code != 125 || !oneLine(r.stderr, fmt.Sprintf("belongs to uid %d, who could forge the records in %s; root acts on no level recorded there", user, run)) || r.stdout != "" {
			t.Errorf("root's %v in the user's run directory: exit %d, %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
	// From outside the delegated subtree the kernel refuses the move.
	if r := runAsUser(t, delegated(t, false), xdg, "exec", "rl", "--", "true"); r.code != 125 || !oneLine(r.stderr, "systemd-run --user --scope cl-unshare exec") {
		t.Errorf("exec from outside the subtree: exit %d, %q", r.code, r.stderr)
	}
	for _, op := range []string{"freeze", "thaw"} {
		if r := runAsUser(t, cli, xdg, op, "rl"); r.code != 0 {
			t.Errorf("%s as the user: exit %d, %q", op, r.code, r.stderr)
		}
	}
	if len(limits) > 0 {
		if r := runAsUser(t, cli, xdg, "update", "rl", "--memory", "32M"); r.code != 0 {
			t.Errorf("update as the user: exit %d, %q", r.code, r.stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(outer, "memory.max")); strings.TrimSpace(string(b)) != "33554432" {
			t.Errorf("outer memory.max after update = %q, want 33554432", b)
		}
	}
	events := asUser(t, cli, xdg, "events", "rl")
	var evOut bytes.Buffer
	events.Stdout, events.Stderr = &evOut, &evOut
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}
	defer events.Process.Kill()
	time.Sleep(200 * time.Millisecond) // events is reading the level
	if r := runAsUser(t, cli, xdg, "kill", "rl"); r.code != 0 {
		t.Errorf("kill as the user: exit %d, %q", r.code, r.stderr)
	}
	err := cmd.Wait()
	if err := events.Wait(); err != nil || !strings.Contains(evOut.String(), `"exit"`) {
		t.Errorf("events as the user: %v, %q (want an exit event)", err, evOut.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) < 2 || lines[0] != "0" || !strings.HasPrefix(lines[1], "0::/") || strings.Contains(lines[1], testParent) {
		t.Errorf("inside: %q (want uid 0 and a cgroup line rooted at the level), %v %s", out.String(), err, errb.String())
	}
	for _, p := range []string{outer, filepath.Join(run, "levels", "rl"), filepath.Join(run, "state", "rl.json")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after the level ended", p)
		}
	}
}

// check, as the user, says where their levels go and which v1
// hierarchies they do without.
func TestRootlessCheck(t *testing.T) {
	rootlessHost(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	r := runAsUser(t, dir, xdg, "check")
	if r.code != 0 || !strings.Contains(r.stdout, "levels go:    cgroup2        under "+dir+"\n") || !strings.Contains(r.stdout, "enforcement:  rootless: ") {
		t.Errorf("check as the user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	for _, h := range hierarchies(t) {
		if !h.V2() && !strings.Contains(r.stdout, "left out:     "+h.Name()+" ") {
			t.Errorf("check as the user does not say %s is left out:\n%s", h.Name(), r.stdout)
		}
	}
	if r := runAsUser(t, delegated(t, false), xdg, "check"); r.code != 125 || !strings.Contains(r.stderr, "no cgroup is delegated to you") {
		t.Errorf("check as the user, not delegated: exit %d, %q", r.code, r.stderr)
	}
}

// Where a user cannot have a level, one line says what to do, exit 125.
func TestRootlessRefused(t *testing.T) {
	rootlessHost(t)
	noLeaks(t)
	xdg := runtimeDir(t)
	for _, c := range []struct {
		name  string
		chown bool
		args  []string
		want  string
	}{
		{"not delegated", false, []string{"--", "true"}, "systemd-run --user --scope -p Delegate=yes"},
		{"exec in place", true, []string{"--exec", "--", "true"}, "--exec: needs root"},
		{"a namespace kept on a file", true, []string{"--net=" + filepath.Join(xdg, "netns"), "--", "true"}, "--net: keeping the namespace on " + filepath.Join(xdg, "netns") + " needs root"},
	} {
		r := runAsUser(t, delegated(t, c.chown), xdg, c.args...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%s: exit %d, %q; want 125 and one line saying %q", c.name, r.code, r.stderr, c.want)
		}
	}
}

// A rootless level nests as any level does: the nested one's cgroup
// mounts show to the user under the outer one's links.
func TestRootlessNested(t *testing.T) {
	rootlessHost(t)
	noLeaks(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	ready := filepath.Join(xdg, "ready")
	inner := fmt.Sprintf(`tail -n 1 /proc/self/cgroup; mkdir /sys/fs/cgroup/deep && touch %s && sleep 60`, ready)
	cmd := asUser(t, dir, xdg, "--name", "outer", "--", bin, "--name", "inner", "--", "sh", "-c", inner)
	var out, errb bytes.Buffer
	startUntil(t, cmd, ready, &out, &errb)
	deep := filepath.Join(xdg, "cl-unshare", "levels", "outer", "levels", "inner", "cgroup", "deep")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := os.Stat(filepath.Join(deep, "cgroup.procs"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the user does not see the nested level's cgroup at %s: %v", deep, err)
			break
		}
	}
	// Made below the outer level's cgroups, in the delegated subtree.
	if _, err := os.Stat(filepath.Join(dir, "outer", "level", "inner", "level")); err != nil {
		t.Errorf("the nested level's cgroup is not below the outer one's: %v", err)
	}
	// list, inspect and exec reach the nested level through the links.
	cli := cliLeaf(t, dir)
	if r := runAsUser(t, cli, xdg, "list"); r.code != 0 || !strings.Contains(r.stdout, "  inner  running") {
		t.Errorf("list as the user does not show the nested level running: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runAsUser(t, cli, xdg, "exec", "outer/inner", "--", "sh", "-c", "tail -n 1 /proc/self/cgroup"); r.code != 0 || r.stdout != "0::/init\n" {
		t.Errorf("exec into the nested level as the user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runAsUser(t, cli, xdg, "kill", "outer"); r.code != 0 {
		t.Errorf("kill as the user: exit %d, %q", r.code, r.stderr)
	}
	cmd.Wait()
	if got := strings.TrimSpace(out.String()); got != "0::/init" {
		t.Errorf("inside the nested level: %q, want 0::/init; %s", got, errb.String())
	}
}

// A user whom /etc/subuid and /etc/subgid give a range gets it in the
// level, from id 1 on, through newuidmap and newgidmap; their own id
// stays the level's root. Asked for (auto) without newuidmap, one line
// says to install it.
func TestRootlessRanges(t *testing.T) {
	rootlessHost(t)
	for _, tool := range []string{"newuidmap", "newgidmap", "/etc/subuid", "/etc/subgid"} {
		if _, err := exec.LookPath(tool); err != nil && !strings.HasPrefix(tool, "/") {
			needsProgram(t, tool, "apt-get install uidmap")
		} else if _, err := os.Stat(tool); strings.HasPrefix(tool, "/") && err != nil {
			needsProgram(t, tool, "apt-get install passwd")
		}
	}
	noLeaks(t)
	name := fmt.Sprint(user)
	if u, err := osuser.LookupId(name); err == nil {
		name = u.Username
	} else {
		// newuidmap asks the passwd database who the caller is: a fact
		// of the machine's accounts, a skip even under CL_UNSHARE_NO_SKIP.
		t.Skipf("needs a passwd entry for uid %s, which newuidmap looks up (useradd -u %s someone)", name, name)
	}
	subids := filepath.Join(t.TempDir(), "subids")
	if err := os.WriteFile(subids, []byte(name+":300000:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, xdg := delegated(t, true), runtimeDir(t)
	file := filepath.Join(xdg, "owned")
	for _, args := range [][]string{nil, {"--map-users", "auto", "--map-groups", "auto"}} {
		os.Remove(file)
		cmd := asUser(t, dir, xdg, append(args, "--", "sh", "-c", "cat /proc/self/uid_map; touch "+file+" && chown 5:7 "+file)...)
		cmd.Env = append(cmd.Env, "CLU_SUBIDS="+subids)
		out, err := cmd.CombinedOutput()
		if f := strings.Fields(string(out)); err != nil || len(f) != 6 || strings.Join(f, " ") != "0 0 1 1 1 65536" {
			t.Errorf("%v: the level's uid_map: %q, %v (want 0 0 1 and 1 1 65536)", args, out, err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(file, &st); err != nil || st.Uid != 300004 || st.Gid != 300006 {
			t.Errorf("%v: chown 5:7 inside made %d:%d on the host, want 300004:300006 (%v)", args, st.Uid, st.Gid, err)
		}
	}
	os.Remove(file)
	rangedExec(t, dir, xdg, subids)
	rangedRoot(t, dir, xdg, subids)
	cmd := asUser(t, dir, xdg, "--map-users", "auto", "--", "true")
	cmd.Env = append(cmd.Env, "CLU_SUBIDS="+subids, "PATH=/nonexistent")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 125 || !oneLine(string(out), "needs newuidmap and newgidmap, which are not installed (apt-get install uidmap)") {
		t.Errorf("auto without newuidmap: exit %d, %q", cmd.ProcessState.ExitCode(), out)
	}
}

// rangedExec checks a level mapped with subordinate ranges: exec runs
// as its root (the caller on the host), not as the level's id that
// equals the caller's host uid; and its launcher in the user namespace,
// which executed itself a second time once mapped, still dies with the
// launcher on the host.
func rangedExec(t *testing.T, dir, xdg, subids string) {
	t.Helper()
	run := filepath.Join(xdg, "cl-unshare")
	cmd := asUser(t, dir, xdg, "--name", "ranged", "--", "sleep", "60")
	cmd.Env = append(cmd.Env, "CLU_SUBIDS="+subids)
	var out, errb bytes.Buffer
	startUntil(t, cmd, filepath.Join(run, "levels", "ranged", "cgroup"), &out, &errb)
	cli := cliLeaf(t, dir)
	if r := runAsUser(t, cli, xdg, "exec", "ranged", "--", "sh", "-c", "id -u; id -g"); r.code != 0 || r.stdout != "0\n0\n" {
		t.Errorf("exec into a ranged level: exit %d, %q %q; want its root, 0 and 0", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(run, "state", "ranged.json"))
	var rec struct {
		Supervisor struct{ PID int } `json:"supervisor"`
	}
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Supervisor.PID == 0 {
		t.Fatalf("the level's record: %v %q", err, b)
	}
	cmd.Process.Kill()
	gone := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !gone; time.Sleep(10 * time.Millisecond) {
		gone = syscall.Kill(rec.Supervisor.PID, 0) != nil
	}
	if !gone {
		syscall.Kill(rec.Supervisor.PID, syscall.SIGKILL)
		t.Errorf("the launcher in the user namespace, PID %d, outlived the one on the host by 5 s: its parent-death signal was lost", rec.Supervisor.PID)
	}
	// Its CMD lives on, as without --kill-child: gc takes it.
	if r := runAsUser(t, cli, xdg, "gc"); r.code != 0 || !strings.Contains(r.stdout, "removed level ranged") {
		t.Errorf("gc as the user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	cmd.Wait()
}

// SIGINT and SIGQUIT that come from kill(1), not a terminal (there is
// none here), reach CMD through both launchers, as SIGTERM does.
func TestRootlessSignals(t *testing.T) {
	rootlessHost(t)
	noLeaks(t)
	xdg := runtimeDir(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM} {
		// A cgroup each: the first launcher's leaf made its cgroup one
		// that hands controllers down, which no process may join.
		dir := delegated(t, true)
		ready := filepath.Join(xdg, "ready")
		os.Remove(ready)
		cmd := asUser(t, dir, xdg, "--", "sh", "-c", fmt.Sprintf("trap 'exit 7' %d; touch %s; while :; do sleep 0.05; done", sig, ready))
		var out, errb bytes.Buffer
		startUntil(t, cmd, ready, &out, &errb)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			if code := cmd.ProcessState.ExitCode(); code != 7 {
				t.Errorf("%v to the launcher: exit %d, want CMD's 7 (%s%s)", sig, code, out.String(), errb.String())
			}
		case <-time.After(10 * time.Second):
			// Its launchers and CMD, all in the test's cgroup, and
			// holding its output open.
			os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
			<-done
			t.Fatalf("%v to the launcher did not reach CMD in 10 s", sig)
		}
	}
}

// rangedRoot checks a level whose root is an id of the caller's range
// (--map-users 0:300010:1000; the gid map follows, as root's does): its
// ids on the host, exec into it as the user, list, and one line for a
// map of ids that are not the user's.
func rangedRoot(t *testing.T, dir, xdg, subids string) {
	t.Helper()
	// Somewhere the level's root may write: not the user's 0700 xdg.
	shared, err := os.MkdirTemp("", "clu-ranged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	file, ready := filepath.Join(shared, "owned"), filepath.Join(shared, "ready")
	// It nests a level, in the run directory it reaches as its root.
	// The user is in group 4242 too, which the level must not be.
	cmd := asUser(t, dir, xdg, "--name", "k", "--map-users", "0:300010:1000", "--", "sh", "-c",
		"cat /proc/self/uid_map /proc/self/gid_map; grep ^Groups: /proc/self/status; touch "+file+" && chown 5:7 "+file+" && exec "+bin+" --name inner -- sh -c 'touch "+ready+" && sleep 60'")
	cmd.Env = append(cmd.Env, "CLU_SUBIDS="+subids, "CLU_GROUPS=4242")
	var out, errb bytes.Buffer
	startUntil(t, cmd, ready, &out, &errb)
	if f := strings.Fields(out.String()); strings.Join(f, " ") != "0 11 1000 0 11 1000 Groups:" {
		t.Errorf("the level's maps and groups: %q (want 0 11 1000 for both: ids 11 on of the launcher's, 300010 on of the host's; and no group)", out.String())
	}
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil || st.Uid != 300015 || st.Gid != 300017 {
		t.Errorf("chown 5:7 inside made %d:%d on the host, want 300015:300017 (%v)", st.Uid, st.Gid, err)
	}
	cli := cliLeaf(t, dir)
	made := filepath.Join(shared, "by-exec")
	execK := asUser(t, cli, xdg, "exec", "k", "--", "sh", "-c", "id -u; id -g; grep ^Groups: /proc/self/status; touch "+made)
	execK.Env = append(execK.Env, "CLU_GROUPS=4242")
	b, err := execK.Output()
	if r := (result{code: execK.ProcessState.ExitCode(), stdout: string(b)}); err != nil || strings.Join(strings.Fields(r.stdout), " ") != "0 0 Groups:" {
		t.Errorf("exec into the level: exit %d, %q %q; want its root, and none of the user's groups", r.code, r.stdout, r.stderr)
	}
	if err := syscall.Stat(made, &st); err != nil || st.Uid != 300010 || st.Gid != 300010 {
		t.Errorf("a file exec made is %d:%d on the host, want the level's root, 300010:300010 (%v)", st.Uid, st.Gid, err)
	}
	if r := runAsUser(t, cli, xdg, "list"); r.code != 0 || !strings.Contains(r.stdout, "k ") || !strings.Contains(r.stdout, "  inner  running") {
		t.Errorf("list as the user, with the nested level: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "k", "level", "inner", "level")); err != nil {
		t.Errorf("the nested level's cgroup: %v", err)
	}
	// (exec into it is the kernel's to refuse: its cgroup.procs is the
	// level's root's alone, and the user no longer owns an id in it.)
	// Its launcher crashes: gc as the user removes what is left, cgroups
	// of the level's root's (ids of the range) and all.
	var rec struct {
		Supervisor struct{ PID int } `json:"supervisor"`
	}
	if b, err := os.ReadFile(filepath.Join(xdg, "cl-unshare", "state", "k.json")); err != nil || json.Unmarshal(b, &rec) != nil || rec.Supervisor.PID == 0 {
		t.Fatalf("the level's record: %v %q", err, b)
	}
	syscall.Kill(rec.Supervisor.PID, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(rec.Supervisor.PID, 0) == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	gc := asUser(t, cli, xdg, "gc")
	gc.Env = append(gc.Env, "CLU_SUBIDS="+subids)
	if b, err := gc.CombinedOutput(); err != nil || !strings.Contains(string(b), "removed level k") {
		t.Errorf("gc as the user of a level of the range's: %v %q", err, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "k")); err == nil {
		t.Errorf("its cgroup %s is left", filepath.Join(dir, "k"))
	}
	cmd.Wait()
	bad := asUser(t, dir, xdg, "--map-users", "0:200000:10", "--", "true")
	bad.Env = append(bad.Env, "CLU_SUBIDS="+subids)
	b, _ = bad.CombinedOutput()
	if bad.ProcessState.ExitCode() != 125 || !oneLine(string(b), "--map-users: 0:200000:10 maps ids that are not yours") || !strings.Contains(string(b), "or ids 300000 to 365535, your range in /etc/subuid") {
		t.Errorf("a map of ids not the user's: exit %d, %q", bad.ProcessState.ExitCode(), b)
	}
}

// needsProgram skips a test that needs a program the machine lacks: in
// the VM's busybox guest always (it has none of the uidmap package),
// elsewhere unless CL_UNSHARE_NO_SKIP forbids it.
func needsProgram(t *testing.T, what, install string) {
	t.Helper()
	if os.Getenv("CL_UNSHARE_NO_SKIP") != "" && os.Getenv("CLU_VM_GUEST") == "" {
		t.Fatalf("needs %s (%s), and CL_UNSHARE_NO_SKIP forbids skipping", what, install)
	}
	t.Skipf("needs %s (%s)", what, install)
}

// A rootless level whose launcher was killed is the user's to collect:
// gc removes its cgroups, record and run directory (links, not mounts).
func TestRootlessGC(t *testing.T) {
	rootlessHost(t)
	noLeaks(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	run := filepath.Join(xdg, "cl-unshare")
	cmd := asUser(t, dir, xdg, "--name", "gone", "--", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var rec struct {
		Supervisor struct{ PID int } `json:"supervisor"`
	}
	for deadline := time.Now().Add(10 * time.Second); rec.Supervisor.PID == 0; time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(run, "state", "gone.json")); err == nil && bytes.Contains(b, []byte(`"cmd"`)) {
			_ = json.Unmarshal(b, &rec)
		}
		if time.Now().After(deadline) {
			t.Fatal("the level did not start")
		}
	}
	// The launcher in its namespace, a child of the one on the host.
	if err := syscall.Kill(rec.Supervisor.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	r := runAsUser(t, cliLeaf(t, dir), xdg, "gc")
	if r.code != 0 || !strings.Contains(r.stdout, "removed level gone") {
		t.Errorf("gc as the user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	for _, p := range []string{filepath.Join(dir, "gone"), filepath.Join(run, "levels", "gone"), filepath.Join(run, "state", "gone.json")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after gc", p)
		}
	}
}

// With user namespaces switched off, a user's level fails with one line
// that names the sysctl.
func TestRootlessNoUserNS(t *testing.T) {
	rootlessHost(t)
	if os.Getenv("CLU_VM_GUEST") == "" {
		// Not a machine-wide switch to flip on a shared host.
		t.Skip("switches user namespaces off for the whole machine: run only in the VM guest, a machine of its own (make test-vm)")
	}
	const knob = "/proc/sys/user/max_user_namespaces"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(knob, old, 0) })
	if err := os.WriteFile(knob, []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	r := runAsUser(t, delegated(t, true), runtimeDir(t), "--", "true")
	if r.code != 125 || !oneLine(r.stderr, "sysctl user.max_user_namespaces is 0") {
		t.Errorf("without user namespaces: exit %d, %q", r.code, r.stderr)
	}
}

// rootlessHost holds a rootless test to a host with cgroup v2, the only
// kind a user who is not root may have levels on; a legacy host's
// refusal is TestRootlessLegacy's.
func rootlessHost(t *testing.T) {
	t.Helper()
	requires(t, "root", "cgroupns")
	if hierarchy(t, "cgroup2") == nil {
		t.Skip("a legacy (v1-only) host has no level for a user who is not root: TestRootlessLegacy checks that it says so")
	}
}

// On a legacy host a user's level is refused with one line.
func TestRootlessLegacy(t *testing.T) {
	requires(t, "root", "cgroupns")
	if hierarchy(t, "cgroup2") != nil {
		t.Skip("this host has cgroup v2: TestRootless covers it")
	}
	noLeaks(t)
	r := runAsUser(t, "", runtimeDir(t), "--", "true")
	if r.code != 125 || !oneLine(r.stderr, "this host has no cgroup v2 hierarchy") {
		t.Errorf("on a legacy host: exit %d, %q", r.code, r.stderr)
	}
}

// --proc-view works for a user too: the launcher in its own user
// namespace may mount FUSE, and the view follows the level's limits.
func TestRootlessProcView(t *testing.T) {
	rootlessHost(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("no /dev/fuse: %v", err)
	}
	noLeaks(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	have, _ := cgroup.Fields(dir, "cgroup.controllers")
	args, want := []string{"--proc-view"}, ""
	if slices.Contains(have, "memory") {
		args, want = append(args, "--memory", "64M"), "MemTotal:          65536 kB"
	}
	r := runAsUser(t, dir, xdg, append(args, "--", "sh", "-c", "grep -c clu-procview /proc/self/mountinfo; grep MemTotal /proc/meminfo")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 || lines[0] != fmt.Sprint(len(procview.Files)) || want != "" && lines[1] != want {
		t.Errorf("--proc-view as the user: exit %d, %q %q (want a mount for each file of the view and %q)", r.code, r.stdout, r.stderr, want)
	}
}

// A Go program that is not root starts levels with the same API as root:
// Start runs its launcher in a user namespace; Pid, Cgroups, Signal,
// Kill, Wait and Close act on the level from outside; a command that is
// not there is ErrorCode 127.
func TestRootlessAPI(t *testing.T) {
	rootlessHost(t)
	noLeaks(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	run := filepath.Join(xdg, "cl-unshare")
	// This binary, where the user may run it (go test's directory is
	// root's alone).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyDir, err := os.MkdirTemp("", "clu-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(copyDir) })
	os.Chmod(copyDir, 0o755)
	prog := filepath.Join(copyDir, "api.test")
	b, err := os.ReadFile(self)
	if err == nil {
		err = os.WriteFile(prog, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, dir, fmt.Sprint(user), prog, run)
	cmd.Env = append(os.Environ(), "CLU_HELPER=asuser", "CLU_THEN=apistart", "XDG_RUNTIME_DIR="+xdg, "HOME=/")
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	want := []string{
		"0", "0::/init", "pid true", "outer " + filepath.Join(dir, "api"), "exit 3 <nil>",
		"signal terminated <nil>",
		"kill killed <nil>",
		"not found 127",
		"close <nil> gone",
	}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); err != nil || !slices.Equal(got, want) {
		t.Errorf("the Go API as a user: %v\n%s\nwant:\n%s", err, out, strings.Join(want, "\n"))
	}
	if _, err := os.Stat(filepath.Join(run, "state", "api.json")); err == nil {
		t.Errorf("a level's record is left")
	}
}

// apiStart is the apistart helper, the user's side of TestRootlessAPI.
func apiStart(run string) int {
	l, err := lvl.Start(lvl.Config{Name: "api", RunDir: run, Argv: []string{"sh", "-c", "id -u; tail -n 1 /proc/self/cgroup; exit 3"}})
	if err != nil {
		fmt.Println("start:", err)
		return 1
	}
	pid, outer := l.Pid() > 0, l.Cgroups()["cgroup2"].Outer
	ws, err := l.Wait()
	fmt.Println("pid", pid)
	fmt.Println("outer", outer)
	fmt.Println("exit", ws.ExitStatus(), err)
	for _, how := range []string{"signal", "kill"} {
		l, err := lvl.Start(lvl.Config{RunDir: run, Argv: []string{"sleep", "30"}})
		if err != nil {
			fmt.Println(how, "start:", err)
			return 1
		}
		if how == "signal" {
			err = l.Signal(syscall.SIGTERM)
		} else {
			err = l.Kill()
		}
		if err != nil {
			fmt.Println(how, err)
		}
		ws, err := l.Wait()
		fmt.Println(how, ws.Signal(), err)
	}
	_, err = lvl.Start(lvl.Config{RunDir: run, Argv: []string{"/nonexistent"}})
	fmt.Println("not found", lvl.ErrorCode(err))
	l, err = lvl.Start(lvl.Config{Name: "closed", RunDir: run, Argv: []string{"sleep", "30"}})
	if err != nil {
		fmt.Println("close start:", err)
		return 1
	}
	err = l.Close()
	_, serr := os.Stat(filepath.Join(run, "state", "closed.json"))
	fmt.Println("close", err, map[bool]string{true: "gone", false: "left"}[os.IsNotExist(serr)])
	return 0
}

// exec into a level whose command left for a user namespace that maps
// no root says so, in one line: exec runs CMD as that namespace's root.
func TestRootlessExecNoRoot(t *testing.T) {
	rootlessHost(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		needsProgram(t, "unshare", "apt-get install util-linux")
	}
	noLeaks(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	ready := filepath.Join(xdg, "ready")
	cmd := asUser(t, dir, xdg, "--name", "nr", "--", "unshare", "-U", "sh", "-c", "touch "+ready+"; exec sleep 60")
	var out, errb bytes.Buffer
	startUntil(t, cmd, ready, &out, &errb)
	r := runAsUser(t, cliLeaf(t, dir), xdg, "exec", "nr", "--", "true")
	if r.code != 125 || !oneLine(r.stderr, "its user namespace maps no root") {
		t.Errorf("exec into an unmapped namespace: exit %d, %q", r.code, r.stderr)
	}
	if r := runAsUser(t, cliLeaf(t, dir), xdg, "kill", "nr"); r.code != 0 {
		t.Errorf("kill: exit %d, %q", r.code, r.stderr)
	}
	cmd.Wait()
}
