package tests

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var syscallUSR1 = syscall.SIGUSR1

// DESIGN contract 8: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
// sent to the launcher reach CMD.
func TestSignalsForwarded(t *testing.T) {
	requires(t, "root", "cgroupns")
	self, _ := os.Executable()
	for _, sig := range []syscall.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT,
		unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			noLeaks(t)
			ready := filepath.Join(t.TempDir(), "ready")
			l := start(t, []string{"CLU_HELPER=trap"}, "--", self, strconv.Itoa(int(sig)), ready)
			waitFile(t, l, ready)
			l.cmd.Process.Signal(sig)
			if r := l.wait(t); r.code != 100+int(sig) {
				t.Errorf("exit %d, want %d (CMD got %v): %s", r.code, 100+int(sig), sig, r.stderr)
			}
		})
	}
}

// DESIGN contract 8, at a terminal: Ctrl-C reaches CMD once,
// from the kernel (CMD holds the terminal's foreground), not again as a
// forwarded copy; also with --init, where CMD is the init's child.
func TestTerminalCtrlC(t *testing.T) {
	requires(t, "root", "cgroupns")
	self, _ := os.Executable()
	for _, args := range [][]string{nil, {"--pid"}, {"--pid", "--init"}} {
		sub := strings.Join(args, "_")
		if sub == "" {
			sub = "default"
		}
		t.Run(sub, func(t *testing.T) {
			noLeaks(t)
			master, slave := openPTY(t)
			defer master.Close()
			go io.Copy(io.Discard, master)
			dir := t.TempDir()
			name := fmt.Sprintf("tty-%d-%d", os.Getpid(), len(args))
			c := exec.Command(bin, append(append([]string{"--cgroup-parent", testParent, "--name", name}, args...),
				"--", self, dir+"/ready", dir+"/count")...)
			c.Env = append(os.Environ(), "CLU_HELPER=intcount")
			c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
			// A session of its own with the pty as its terminal, as a
			// login shell has; cl-unshare is its foreground job.
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			defer func() {
				select {
				case <-done:
				default:
					c.Process.Kill()
					cmd(t, "kill", name)
					<-done
				}
			}()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(dir + "/ready"); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("CMD never got ready")
				}
			}
			master.Write([]byte{3}) // ^C, as typed
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				ps, _ := exec.Command("ps", "-eo", "pid,ppid,pgid,tpgid,stat,wchan:20,args").Output()
				t.Fatalf("cl-unshare did not end after Ctrl-C:\n%s", ps)
			}
			if n := mustRead(t, dir+"/count"); n != "1" {
				t.Errorf("CMD got %s SIGINTs for one Ctrl-C, want 1", n)
			}
			if code := c.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit %d, want 0", code)
			}
		})
	}
}

// A --user level's command, and a command exec'd into one, cannot push
// input into the terminal of whoever started it (TIOCSTI: it would run in
// that user's shell once the level ends). A level without a user
// namespace is root anyway; there the probe succeeds, showing it works.
func TestTerminalInjection(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	// The level's root (host uid 100000) must reach the helper and the
	// pid file.
	dir, self := openDir(t)
	env := []string{"CLU_HELPER=tiocsti"}
	if out := onPTY(t, env, "--cgroup-parent", testParent, "--", self); !strings.Contains(out, "tiocsti: ok") {
		t.Errorf("level without --user: %q, want the probe to work", out)
	}
	if out := onPTY(t, env, "--cgroup-parent", testParent, "--user", "--", self); !strings.Contains(out, "tiocsti: operation not permitted") {
		t.Errorf("--user level: %q, want EPERM", out)
	}
	l := start(t, nil, append([]string{"--user"}, script("echo $$ > "+dir+"/pid", "exec sleep 600")...)...)
	pidOf(t, l, dir+"/pid")
	if out := onPTY(t, env, "exec", l.name, "--", self); !strings.Contains(out, "tiocsti: operation not permitted") {
		t.Errorf("exec into a --user level: %q, want EPERM", out)
	}
	l.stop(t)
}

// onPTY runs cl-unshare with args in a session of its own on a new pty,
// as from a login shell, and returns what it wrote there.
func onPTY(t *testing.T, env []string, args ...string) string {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	var out strings.Builder
	copied := make(chan struct{})
	go func() { io.Copy(&out, master); close(copied) }()
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), env...)
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err := c.Start()
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.Process.Kill()
		<-done
		t.Errorf("cl-unshare %v did not end", args)
	}
	select {
	case <-copied: // EIO once every holder of the slave is gone
	case <-time.After(2 * time.Second):
	}
	return out.String()
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// A process the level froze in a cgroup of its own is still killed at
// the end, also where the kill goes through a freezer (legacy hosts): a
// v1 cgroup frozen by itself stays frozen when its parent thaws.
func TestFrozenChildKilled(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, env := range [][]string{nil, {"CL_UNSHARE_FAIL_AT=cgroup.kill"}} {
		r := cluEnv(t, env, script(
			"if [ -d /sys/fs/cgroup/freezer ]; then d=/sys/fs/cgroup/freezer/sub; f=freezer.state; v=FROZEN",
			"else d=/sys/fs/cgroup/sub; f=cgroup.freeze; v=1; fi",
			"mkdir $d || echo setup failed >&2",
			"sleep 600 & echo $! > $d/cgroup.procs && echo $v > $d/$f || echo setup failed >&2")...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%v: exit %d, stderr %q; want 0 and nothing", env, r.code, r.stderr)
		}
	}
}

// DESIGN contract 8: CMD's exit code, or 128+N when it died of signal N.
func TestExitStatus(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	if r := clu(t, "--", "/bin/sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exit 7 gave %d: %s", r.code, r.stderr)
	}
	if r := clu(t, "--", "/bin/sh", "-c", "kill -TERM $$"); r.code != 128+15 {
		t.Errorf("death by SIGTERM gave %d, want 143: %s", r.code, r.stderr)
	}
	dir := t.TempDir()
	l := start(t, nil, script("echo $$ > "+dir+"/pid", "exec sleep 600")...)
	pidOf(t, l, dir+"/pid")
	l.cmd.Process.Signal(unix.SIGTERM)
	if r := l.wait(t); r.code != 143 {
		t.Errorf("forwarded SIGTERM to sleep gave %d, want 143", r.code)
	}
}

// DESIGN contract 8: whatever is left in the level when CMD exits is killed, and the
// level's cgroups, mirror and run directory are removed (noLeaks); also
// without cgroup.kill (forced here, as on kernels before 5.14), through a
// freezer.
func TestLeftoversKilled(t *testing.T) {
	requires(t, "root", "cgroupns")
	for _, env := range [][]string{nil, {"CL_UNSHARE_FAIL_AT=cgroup.kill"}} {
		t.Run(fmt.Sprintf("env=%v", env), func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			l := start(t, env, script("setsid sh -c 'sleep 600 & echo $! > "+dir+"/daemon' &",
				"while [ ! -s "+dir+"/daemon ]; do sleep 0.01; done", "exit 3")...)
			if r := l.wait(t); r.code != 3 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			pid, _ := strconv.Atoi(mustRead(t, dir+"/daemon"))
			if alive(pid) {
				t.Errorf("daemon %d outlived its level", pid)
			}
		})
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// With no CMD, it runs $SHELL, or /bin/sh.
func TestDefaultShell(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, shell := range []string{"/bin/sh", ""} {
		cmd := exec.Command(bin, "--cgroup-parent", testParent)
		cmd.Env = append(os.Environ(), "SHELL="+shell)
		cmd.Stdin = strings.NewReader("echo in-shell; exit 3\n")
		out, _ := cmd.Output()
		if cmd.ProcessState.ExitCode() != 3 || strings.TrimSpace(string(out)) != "in-shell" {
			t.Errorf("SHELL=%q: exit %d, output %q", shell, cmd.ProcessState.ExitCode(), out)
		}
	}
}

// 125 for cl-unshare's own failures, with one line naming the flag
// and value; 126 and 127 for CMD.
func TestUsageErrors(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	notExec := filepath.Join(t.TempDir(), "not-exec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--bogus", "--", "true"}, 125, "bogus"},
		{[]string{"--memory", "10XB", "--", "true"}, 125, `--memory: invalid size "10XB" (use a number with K, M, G or T)`},
		{[]string{"--memory", "-5M", "--", "true"}, 125, "--memory: invalid size"},
		{[]string{"--cpus", "lots", "--", "true"}, 125, `--cpus: invalid CPU quota "lots"`},
		{[]string{"--cpu-weight", "0", "--", "true"}, 125, `--cpu-weight: invalid weight "0"`},
		{[]string{"--pids-max", "-1", "--", "true"}, 125, `--pids-max: invalid count "-1"`},
		{[]string{"--cpuset-cpus", "3-1", "--", "true"}, 125, `--cpuset-cpus: invalid list "3-1"`},
		{[]string{"--cpuset-mems", "x", "--", "true"}, 125, `--cpuset-mems: invalid list "x"`},
		{[]string{"--set", "memory.high", "--", "true"}, 125, `--set: invalid setting "memory.high"`},
		{[]string{"--set", "../../x.y=1", "--", "true"}, 125, `--set: invalid controller file`},
		{[]string{"--run-dir", "relative", "--", "true"}, 125, `--run-dir: "relative" is not an absolute path`},
		{[]string{"--", "/nonexistent/cmd"}, 127, "/nonexistent/cmd: no such file or directory"},
		{[]string{"--", "no-such-command-xyz"}, 127, "no-such-command-xyz: executable file not found in $PATH"},
		{[]string{"--", notExec}, 126, notExec + ": permission denied"},
		{[]string{"--", "/tmp"}, 126, "/tmp: permission denied"},
	}
	for _, c := range cases {
		r := clu(t, c.args...)
		if r.code != c.code || !oneLine(r.stderr, c.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and one line with %q", c.args, r.code, r.stderr, c.code, c.msg)
		}
	}
}

// oneLine reports whether s is one "cl-unshare: ..." line containing msg.
func oneLine(s, msg string) bool {
	return strings.Count(s, "\n") == 1 && strings.HasPrefix(s, "cl-unshare: ") && strings.Contains(s, msg) && !strings.Contains(s, "EOF")
}

// A failure at each setup step exits 125 with one line
// naming the step, and leaves nothing behind.
func TestSetupStepFailures(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	for _, step := range []string{"cgroups", "run-dir", "spawn", "release",
		"unshare cgroup namespace", "mount propagation", "hide host mounts", "cgroup mirror", "run directory",
		"cgroup mounts", "namespaces", "new root", "before exec", "crash:cgroup mounts",
		// With --user the first three mount steps run in the launcher, on
		// a thread of its own (nsexec.PrepareMounts).
		"user:mount propagation", "user:hide host mounts", "user:cgroup mirror", "user:run directory",
		"user:cgroup mounts", "user:namespaces", "user:new root", "user:crash:cgroup mounts", "user:unshare mount namespace",
		// With --mount-proc too, the launcher attaches the level's /proc.
		"userproc:unshare mount namespace", "userproc:attach proc", "user:mirror"} {
		t.Run(strings.ReplaceAll(step, " ", "_"), func(t *testing.T) {
			noLeaks(t)
			args := []string{"--memory", "64M", "--", "true"}
			if s, ok := strings.CutPrefix(step, "user:"); ok {
				step, args = s, append([]string{"--user"}, args...)
			}
			if s, ok := strings.CutPrefix(step, "userproc:"); ok {
				step, args = s, append([]string{"--user", "--pid", "--mount-proc"}, args...)
			}
			l := start(t, []string{"CL_UNSHARE_FAIL_AT=" + step}, args...)
			r := l.wait(t)
			want := step
			if strings.HasPrefix(step, "crash:") {
				want = "init stage exited before exec: signal: killed"
			}
			if step == "attach proc" {
				want = "mount /proc: failure injected"
			}
			if r.code != 125 || !oneLine(r.stderr, want) {
				t.Errorf("exit %d, stderr %q; want 125 and one line with %q", r.code, r.stderr, want)
			}
		})
	}
}

// Names are validated; a name in use is refused without touching
// the running level.
func TestNames(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, n := range []string{"bad name", "-x", ".hidden", "a/b", strings.Repeat("x", 65)} {
		if r := clu(t, "--name", n, "--", "true"); r.code != 125 || !oneLine(r.stderr, "--name: invalid name") {
			t.Errorf("--name %q: exit %d, stderr %q", n, r.code, r.stderr)
		}
	}
	if r := clu(t, "--name", strings.Repeat("x", 64), "--", "true"); r.code != 0 {
		t.Errorf("64-character name refused: %s", r.stderr)
	}
	dir := t.TempDir()
	a := start(t, nil, append([]string{"--name", "taken-" + strconv.Itoa(os.Getpid())}, script("echo $$ > "+dir+"/pid", "sleep 600")...)...)
	pid := pidOf(t, a, dir+"/pid")
	before := snapshot(t)
	r := clu(t, "--name", a.name, "--", "true")
	if r.code != 125 || !oneLine(r.stderr, "already in use") {
		t.Errorf("second level named %s: exit %d, stderr %q", a.name, r.code, r.stderr)
	}
	if d := diff(before, snapshot(t)); d != "" || !alive(pid) || !a.running() {
		t.Errorf("refusing a name changed the running level:\n%s (alive=%v)", d, alive(pid))
	}
	a.stop(t)
}

// "cl-unshare -- list" runs a program called list.
func TestDashDashRunsProgram(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "list"), []byte("#!/bin/sh\nexit 42\n"), 0o755)
	l := start(t, []string{"PATH=" + dir + ":" + os.Getenv("PATH")}, "--", "list")
	if r := l.wait(t); r.code != 42 {
		t.Errorf("-- list: exit %d, want 42 from the program: %s", r.code, r.stderr)
	}
}

// A command line far over a socket buffer (here 600 KB) reaches CMD whole.
func TestLongCommandLine(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	args := []string{"--", "/bin/sh", "-c", `echo $#`, "sh"}
	for i := 0; i < 6000; i++ {
		args = append(args, strings.Repeat("x", 100))
	}
	if r := clu(t, args...); r.code != 0 || strings.TrimSpace(r.stdout) != "6000" {
		t.Errorf("exit %d, CMD saw %q arguments, want 6000: %s", r.code, r.stdout, r.stderr)
	}
}
