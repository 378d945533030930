package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// unitCgroup makes a cgroup for one test process to run in alone, as a
// service manager gives a unit with Delegate=yes, where levels go.
func unitCgroup(t *testing.T, h cgroup.Hierarchy) (string, int) {
	t.Helper()
	dir := h.Dir(filepath.Join(cgroup.Base(h), fmt.Sprintf("clu-unit-%d-%d", os.Getpid(), time.Now().UnixNano())))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return dir, fd
}

// --exec sets the level up and becomes CMD, same PID; the
// unit's own cgroup is left empty; NOTIFY_SOCKET still works; the level is
// listed, killed and collected like the others.
func TestExecInPlace(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var unit string
	attr := &syscall.SysProcAttr{}
	if v2 := hierarchy(t, "cgroup2"); v2 != nil {
		var fd int
		unit, fd = unitCgroup(t, *v2)
		attr.UseCgroupFD, attr.CgroupFD = true, fd
	}
	noLeaks(t)
	self, _ := os.Executable()
	name := "svc-" + strconv.Itoa(os.Getpid())
	c := exec.Command(bin, "--exec", "--name", name, "--memory", "64M", "--", "/bin/sh", "-c",
		fmt.Sprintf("CLU_HELPER=notify %s || exit 9; echo $$ > %s/pid; exec sleep 600", self, dir))
	c.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	c.SysProcAttr = attr
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait(); cmd(t, "gc") }()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	if string(buf[:n]) != "READY=1" {
		t.Errorf("the service manager's socket got %q, want READY=1 (%s)", buf[:n], stderr.String())
	}
	pid := pidOf(t, nil, dir+"/pid")
	if pid != c.Process.Pid {
		t.Errorf("CMD runs as PID %d, cl-unshare --exec was %d", pid, c.Process.Pid)
	}
	if unit != "" {
		if procs, _ := cgroup.Fields(unit, "cgroup.procs"); len(procs) != 0 {
			t.Errorf("the unit's cgroup %s still holds %v", unit, procs)
		}
		if _, err := os.Stat(filepath.Join(unit, name, cgroup.InnerName)); err != nil {
			t.Errorf("level not below the unit's cgroup: %v", err)
		}
	}
	i := findInfo(listJSON(t), name)
	if i == nil || i.State != lvl.Running || i.CmdPID != pid || i.Limits["memory.max"]+i.Limits["memory.limit_in_bytes"] != "67108864" {
		t.Fatalf("list: %+v", i)
	}
	if r := cmd(t, "kill", name); r.code != 0 {
		t.Fatalf("kill: %d %s", r.code, r.stderr)
	}
	c.Wait()
	if code := c.ProcessState.ExitCode(); code != -1 && code != 137 {
		t.Errorf("killed --exec level exited %d", code)
	}
	if r := cmd(t, "gc"); !strings.Contains(r.stdout, "removed level "+name) {
		t.Errorf("gc after the --exec level died: %q %s", r.stdout, r.stderr)
	}
}

// --ready-fd is closed once the level is set up, and
// --json-status-fd says "ready" then "exit".
func TestStatusFDs(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	readyR, readyW, _ := os.Pipe()
	statusR, statusW, _ := os.Pipe()
	defer readyR.Close()
	defer statusR.Close()
	c := exec.Command(bin, "--cgroup-parent", testParent, "--ready-fd", "3", "--json-status-fd", "4", "--",
		"/bin/sh", "-c", "echo $$ > "+dir+"/pid; while [ ! -e "+dir+"/go ]; do sleep 0.01; done; exit 5")
	c.ExtraFiles = []*os.File{readyW, statusW}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	statusW.Close()
	defer func() { os.WriteFile(dir+"/go", nil, 0o644); c.Wait() }()
	if b, _ := io.ReadAll(readyR); len(b) != 0 {
		t.Errorf("ready fd gave %q, want EOF", b)
	}
	// EOF came while CMD still waits: the fd did not leak into it.
	if _, err := os.Stat(dir + "/go"); err == nil {
		t.Fatal("bug in test")
	}
	lines := bufio.NewScanner(statusR)
	var ready, exit lvl.Event
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &ready) != nil {
		t.Fatalf("no ready line: %q", lines.Text())
	}
	pid := pidOf(t, nil, dir+"/pid")
	if ready.Event != "ready" || ready.CmdPID != pid || ready.SupervisorPID != c.Process.Pid || len(ready.Cgroups) != len(hierarchies(t)) ||
		ready.Namespaces == nil || ready.Namespaces.Cgroup == 0 || !strings.HasSuffix(ready.Mirror, "/cgroup") {
		t.Errorf("ready line %+v", ready)
	}
	os.WriteFile(dir+"/go", nil, 0o644)
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &exit) != nil {
		t.Fatalf("no exit line: %q", lines.Text())
	}
	if exit.Event != "exit" || exit.ExitCode == nil || *exit.ExitCode != 5 || exit.How != "exited" {
		t.Errorf("exit line %s", lines.Text())
	}
	for _, bad := range [][]string{{"--ready-fd", "99"}, {"--json-status-fd", "98"}, {"--exec", "--json-status-fd", "2"}, {"--exec", "--kill-child"}, {"--mount-proc"}, {"--init"}, {"--exec", "--pid"}} {
		r := clu(t, append(bad, "--", "true")...)
		if r.code != 125 || !oneLine(r.stderr, "cl-unshare: ") {
			t.Errorf("%v: exit %d, %q", bad, r.code, r.stderr)
		}
	}
}

// --pid --mount-proc: CMD is PID 1 with a fresh /proc;
// signals reach it; when it exits the whole level dies.
func TestPIDNamespace(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	r := clu(t, append([]string{"--pid", "--mount-proc"}, script("echo pid=$$", "echo procs=$(ls /proc | grep -c '^[0-9]')")...)...)
	out := parseKV(r.stdout)
	if r.code != 0 || out["pid"] != "1" {
		t.Errorf("exit %d, CMD pid %s, want 1: %s", r.code, out["pid"], r.stderr)
	}
	if n, _ := strconv.Atoi(out["procs"]); n == 0 || n > 5 {
		t.Errorf("/proc inside shows %s processes", out["procs"])
	}
	// With --init too, CMD's end is the level's: the sleep it leaves goes.
	if r := clu(t, "--pid", "--init", "--", "/bin/sh", "-c", "sleep 600 & exit 5"); r.code != 5 {
		t.Errorf("--init, CMD exits 5 leaving a sleep: exit %d: %s", r.code, r.stderr)
	}
	l := start(t, nil, append([]string{"-p", "--mount-proc"}, script(
		"trap 'exit 42' TERM",
		"sleep 600 & echo $! > "+dir+"/child",
		"ps -o pid,comm >/dev/null 2>&1; ls /proc/self/ns > /dev/null",
		"echo $$ > "+dir+"/pid",
		"while :; do sleep 0.01; done")...)...)
	pidOf(t, l, dir+"/pid")
	// exec joins the level's PID namespace too: a small PID, its /proc.
	r = cmd(t, "exec", l.name, "--", "/bin/sh", "-c", "echo pid=$$; echo procs=$(ls /proc | grep -c '^[0-9]'); exit 6")
	out = parseKV(r.stdout)
	if n, _ := strconv.Atoi(out["pid"]); r.code != 6 || n == 0 || n > 50 {
		t.Errorf("exec into a PID namespace: exit %d, pid %s: %s", r.code, out["pid"], r.stderr)
	}
	l.cmd.Process.Signal(unix.SIGTERM)
	if r := l.wait(t); r.code != 42 {
		t.Errorf("SIGTERM forwarded to PID 1 with a trap: exit %d", r.code)
	}
}

// Orphans: PID 1 of a PID namespace is the only process
// the kernel gives orphans to. With CMD as PID 1 (as unshare --fork
// --pid) they are CMD's to reap, and a CMD that never waits gathers
// zombies; with --init cl-unshare is PID 1 and reaps every one, passes
// signals on to CMD, and the level dies with CMD.
func TestPIDNamespaceOrphans(t *testing.T) {
	requires(t, "root", "cgroupns")
	for _, init := range []bool{false, true} {
		t.Run(fmt.Sprintf("init=%v", init), func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			args := []string{"--pid"}
			if init {
				args = append(args, "--init")
			}
			// Three orphans that end at once; then CMD becomes a sleep,
			// which never waits for anything.
			var lines []string
			for i := 0; i < 3; i++ {
				lines = append(lines, fmt.Sprintf("(sh -c 'while [ ! -e %s/go ]; do sleep 0.01; done' &)", dir))
			}
			l := start(t, nil, append(args, script(append(lines, "echo $$ > "+dir+"/pid", "exec sleep 600")...)...)...)
			pidOf(t, l, dir+"/pid")
			r := cmd(t, "inspect", "--json", l.name)
			var info lvl.Info
			if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.CmdPID == 0 {
				t.Fatalf("inspect: %v, exit %d: %s%s", err, r.code, r.stdout, r.stderr)
			}
			pid1 := info.CmdPID
			os.WriteFile(dir+"/go", nil, 0o644)
			var kids map[int]string
			zombies := 0
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				kids, zombies = children(t, pid1), 0
				for _, st := range kids {
					if st == "Z" {
						zombies++
					}
				}
				if init && len(kids) == 1 && zombies == 0 || !init && zombies == 3 {
					break
				}
			}
			if init && (len(kids) != 1 || zombies != 0) {
				t.Errorf("--init: PID 1 (%d) has %v (pid: state), want only CMD", pid1, kids)
			}
			if !init && zombies != 3 {
				t.Errorf("CMD as PID 1 that never waits: %d zombies under it (%v), want 3", zombies, kids)
			}
			if !init {
				// A PID 1 without a handler ignores SIGTERM: kill it.
				if r := cmd(t, "kill", l.name); r.code != 0 {
					t.Errorf("kill: exit %d: %s", r.code, r.stderr)
				}
				if r := l.wait(t); r.code != 137 {
					t.Errorf("killed: exit %d, want 137: %s", r.code, r.stderr)
				}
				return
			}
			// CMD is not PID 1 here: the default action applies, and the
			// level ends with it (the init exits, the namespace dies).
			l.cmd.Process.Signal(unix.SIGTERM)
			if r := l.wait(t); r.code != 128+int(unix.SIGTERM) {
				t.Errorf("SIGTERM passed on to CMD: exit %d, want 143: %s", r.code, r.stderr)
			}
		})
	}
}

// children maps the children of pid (from every /proc/*/stat) to their
// state letter.
func children(t *testing.T, pid int) map[int]string {
	t.Helper()
	out := map[int]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// comm may hold spaces: the fields after it follow the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(strings.Split(d, "/")[2])
			out[n] = f[0]
		}
	}
	return out
}

// exec into a -r level (run as root: the level's root is host uid 0)
// still takes every capability away and sets no_new_privs.
func TestExecMapRootUser(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, append([]string{"-r"}, script("echo $$ > "+dir+"/pid", "exec sleep 600")...)...)
	pidOf(t, l, dir+"/pid")
	r := cmd(t, "exec", l.name, "--", "/bin/sh", "-c", "grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs):' /proc/self/status")
	want := "Uid: 0 0 0 0 CapEff: 0000000000000000 CapBnd: 0000000000000000 NoNewPrivs: 1"
	if got := strings.Join(strings.Fields(r.stdout), " "); r.code != 0 || got != want {
		t.Errorf("exec into a -r level: exit %d, %q, want %q: %s", r.code, got, want, r.stderr)
	}
	l.stop(t)
}

// A --user level inside a --user level: the host ids of the inner map
// must be ids the outer level has; the default range is not, and the
// error says what is.
func TestUserNamespaceNested(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	r := clu(t, "--user", "--", bin, "--user", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "--map-users: ids 100000-165535 are not mapped in this user namespace") ||
		!strings.Contains(r.stderr, "0:0:65536") {
		t.Errorf("nested --user with the default map: exit %d, %q", r.code, r.stderr)
	}
	r = clu(t, "--user", "--", bin, "--user", "--map-users", "0:0:65536", "--", "/bin/sh", "-c",
		"id -u; cat /proc/self/cgroup")
	if out := strings.Fields(r.stdout); r.code != 0 || len(out) < 2 || out[0] != "0" || slices.ContainsFunc(out[1:], func(l string) bool { return !ownLine(l) }) {
		t.Errorf("nested --user with 0:0:65536: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// The host's /etc/subuid, which the level sees, says nothing about
	// the level's ids: a root line there must not refuse that map.
	// (A tmpfs over the level's /etc: the host may have no /etc/subuid.)
	r = clu(t, "--user", "--", "/bin/sh", "-c",
		"mount -t tmpfs none /etc && echo root:200000:65536 > /etc/subuid && "+bin+" --user --map-users 0:0:65536 -- id -u")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("nested --user with root in /etc/subuid: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
}

// --kill-child sends SIG to CMD when the supervisor dies;
// without it the level lives on, orphaned, until gc.
func TestKillChild(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	self, _ := os.Executable()
	for _, killChild := range []bool{true, false} {
		tmp := t.TempDir()
		ready := filepath.Join(tmp, "ready")
		// CMD and another process of the level: both must get the signal.
		args := script("sleep 600 & echo $! > "+tmp+"/bg",
			fmt.Sprintf("exec %s %d %s", self, unix.SIGUSR2, ready))
		if killChild {
			args = append([]string{"--kill-child=USR2"}, args...)
		}
		l := start(t, []string{"CLU_HELPER=trap"}, args...)
		waitFile(t, l, ready)
		i := findInfo(listJSON(t), l.name)
		if i == nil {
			t.Fatalf("level %s not listed", l.name)
		}
		cmdPID := i.CmdPID
		l.cmd.Process.Kill()
		<-l.done
		bg := pidOf(t, nil, tmp+"/bg")
		if killChild {
			waitFor(t, "CMD to get SIGUSR2", func() bool { return !alive(cmdPID) })
			waitFor(t, "the level's other process to get SIGUSR2", func() bool { return !alive(bg) })
		} else {
			time.Sleep(100 * time.Millisecond)
			if !alive(cmdPID) {
				t.Errorf("without --kill-child CMD died with its supervisor")
			}
			if i := findInfo(listJSON(t), l.name); i == nil || i.State != lvl.Orphaned {
				t.Errorf("list: %+v, want orphaned", i)
			}
		}
		if r := cmd(t, "gc"); !strings.Contains(r.stdout, "removed level "+l.name) {
			t.Errorf("gc: %q %s", r.stdout, r.stderr)
		}
	}
}

// --user: root inside is a mapped host id; the kernel
// refuses the level's writes to its own root's limits; it can still make
// children; a cgroupfs it mounts later reaches the host mirror.
func TestUserNamespace(t *testing.T) {
	requires(t, "root", "cgroupns")
	cs := needController(t, "memory", "pids")
	noLeaks(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // the level's root is host uid 100000
	os.Chmod(filepath.Dir(dir), 0o755)
	mem, pids := cs["memory"], cs["pids"]
	memFile := "memory.limit_in_bytes"
	if mem.v2 {
		memFile = "memory.max"
	}
	late := "mount -t cgroup2 none /sys/fs/cgroup/extra"
	lateType := "cgroup2"
	if hierarchy(t, "cgroup2") == nil {
		late, lateType = "mount -t cgroup -o "+strings.Join(hierarchies(t)[0].Controllers, ",")+" none /sys/fs/cgroup/extra", "cgroup"
	}
	l := start(t, nil, append([]string{"--user", "--memory", "32M", "--pids-max", "40"}, script(
		"echo uid=$(id -u) > "+dir+"/out",
		fmt.Sprintf("echo 1073741824 > %s/%s 2>/dev/null; echo raise-mem=$? >> %s/out", mem.inside, memFile, dir),
		fmt.Sprintf("echo max > %s/pids.max 2>/dev/null; echo raise-pids=$? >> %s/out", pids.inside, dir),
		fmt.Sprintf("mkdir %s/sub && echo sub=0 >> %s/out", pids.inside, dir),
		"mkdir /sys/fs/cgroup/extra; "+late+"; echo late=$? >> "+dir+"/out",
		"echo $$ > "+dir+"/pid",
		"while [ ! -e "+dir+"/go ]; do sleep 0.01; done",
		"rmdir "+pids.inside+"/sub",
		"cat /proc/self/mountinfo > "+dir+"/mountinfo",
		// Root here may unmount what it mounted; under it must be
		// nothing of the host's (the mounts it inherited are locked).
		"umount -l /sys/fs/cgroup; find /sys/fs/cgroup -mindepth 2 > "+dir+"/cgroup-under",
		"umount -l "+runDir+"; ls -A "+runDir+" > "+dir+"/run-under")...)...)
	pid := pidOf(t, l, dir+"/pid")
	out := parseKV(mustRead(t, dir+"/out"))
	if out["uid"] != "0" {
		t.Errorf("uid inside %s, want 0", out["uid"])
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(string(status), "Uid:\t100000\t100000") {
		t.Errorf("CMD is not the mapped root on the host:\n%s", status)
	}
	if out["raise-mem"] == "0" || out["raise-pids"] == "0" {
		t.Errorf("writes to the level's own limits succeeded: %v", out)
	}
	if out["sub"] != "0" || out["late"] != "0" {
		t.Errorf("the level could not make a child cgroup or mount a cgroupfs: %v", out)
	}
	// The supervisor copies it to the host (package mirror), soon after.
	waitFor(t, "the cgroupfs mounted inside after start on the host mirror", func() bool {
		return slices.ContainsFunc(mountLines(t, "self"), func(m string) bool {
			return strings.HasPrefix(m, filepath.Join(runDir, "levels", l.name, "cgroup", "extra")+" "+lateType)
		})
	})
	// exec cannot enter the user namespace; CMD runs as the level's root
	// on the host, with no capabilities: never as host root in there.
	// No capability in any set and no_new_privs: no setuid binary the
	// level's mounts offer brings any back.
	r := cmd(t, "exec", l.name, "--", "/bin/sh", "-c", "grep -E '^(Uid|Gid|Groups|Cap...|NoNewPrivs):' /proc/self/status")
	want := "Uid: 100000 100000 100000 100000 Gid: 100000 100000 100000 100000 Groups: " +
		"CapInh: 0000000000000000 CapPrm: 0000000000000000 CapEff: 0000000000000000 CapBnd: 0000000000000000 CapAmb: 0000000000000000 NoNewPrivs: 1"
	if got := strings.Join(strings.Fields(r.stdout), " "); r.code != 0 || got != want {
		t.Errorf("exec into a --user level: exit %d, %q, want %q: %s", r.code, got, want, r.stderr)
	}
	os.WriteFile(dir+"/go", nil, 0o644)
	if r := l.wait(t); r.code != 0 {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	for _, m := range strings.Split(mustRead(t, dir+"/mountinfo"), "\n") {
		f := strings.Fields(m)
		if len(f) > 4 && (strings.Contains(m, " - cgroup") && f[3] != "/" || mounts.Under(f[4], filepath.Join(runDir, "levels"))) {
			t.Errorf("the level's mount table shows a host cgroupfs or run directory: %s", m)
		}
	}
	if under := mustRead(t, dir+"/cgroup-under"); under != "" {
		t.Errorf("under the level's /sys/fs/cgroup: %q, want only its own empty mount points", under)
	}
	if under := strings.Fields(mustRead(t, dir+"/run-under")); slices.Contains(under, "state") || slices.Contains(under, "levels") {
		t.Errorf("under the level's %s: the host's %v", runDir, under)
	}
	for _, bad := range [][]string{{"--user", "--map-users", "5:100000:10"}, {"--map-users", "0:100000:10"}, {"--user", "--map-users", "x"}} {
		if r := clu(t, append(bad, "--", "true")...); r.code != 125 || !oneLine(r.stderr, "--map-users") {
			t.Errorf("%v: exit %d, %q", bad, r.code, r.stderr)
		}
	}
}
