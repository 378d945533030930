// Package systemd holds the tests that need systemd as PID 1: README's
// service unit (Delegate=yes, Type=notify, cl-unshare --exec), a
// delegated transient scope, and a login-like scope without delegation.
// They run in the VM matrix's systemd layout (tests/vm/run.sh), where
// the guest boots Debian's systemd on the host's root; `make test` does
// not build them, since the development host's PID 1 is not systemd.
//
// Each test makes its own units under /run/systemd/system (runtime
// units, gone with the guest) and removes them and what they made.
package systemd

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
)

// bin is the installed cl-unshare, where README's unit names it.
const bin = "/usr/local/bin/cl-unshare"

const runDir = "/run/cl-unshare"

func TestMain(m *testing.M) {
	if os.Getenv("CLU_HELPER") == "serve" {
		os.Exit(serve())
	}
	os.Exit(m.Run())
}

// serve is a service's main process: it tells the manager it is ready
// (from its own PID, as NotifyAccess=main wants) and runs until stopped.
func serve() int {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: os.Getenv("NOTIFY_SOCKET"), Net: "unixgram"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		return 1
	}
	if _, err := c.Write([]byte("READY=1")); err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		return 1
	}
	c.Close()
	for {
		time.Sleep(time.Hour) // until the manager stops it
	}
}

// requireSystemd fails (not skips: this package runs only where systemd
// is PID 1) unless it is.
func requireSystemd(t *testing.T) {
	t.Helper()
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) != "systemd" {
		t.Fatalf("PID 1 is %q, not systemd: these tests run in the VM's systemd layout (CLU_VM_LAYOUTS=systemd make test-vm)", strings.TrimSpace(string(comm)))
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("cl-unshare is not installed where README's unit has it: %v", err)
	}
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// show reads one property of a unit.
func show(t *testing.T, unit, prop string) string {
	t.Helper()
	return strings.TrimSpace(must(t, "systemctl", "show", "--value", "-p", prop, unit))
}

func list(t *testing.T) []lvl.Info {
	t.Helper()
	var ls []lvl.Info
	out := must(t, bin, "list", "--json")
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatalf("list --json: %v: %s", err, out)
	}
	return ls
}

func find(ls []lvl.Info, name string) *lvl.Info {
	for i := range ls {
		if ls[i].Name == name {
			return &ls[i]
		}
	}
	return nil
}

// gone fails if anything of level name is left: a record, a run
// directory, a listing, or a cgroup below dir (the unit's cgroup).
func gone(t *testing.T, name, dir string) {
	t.Helper()
	for _, p := range []string{filepath.Join(runDir, "levels", name), filepath.Join(runDir, "state", name+".json")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left", p)
		}
	}
	if find(list(t), name) != nil {
		t.Errorf("level %s is still listed", name)
	}
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("cgroup %s/%s is left", dir, name)
		}
	}
}

// README's unit: systemctl start reaches active (running) once CMD sends
// READY=1, the level is listed with the unit's main PID as its CMD and
// its cgroups under the unit's; three restarts each give one fresh level;
// stop leaves nothing.
func TestServiceUnit(t *testing.T) {
	requireSystemd(t)
	self, _ := os.Executable()
	const unit, name = "clu-web.service", "web"
	unitText := fmt.Sprintf(`[Service]
Delegate=yes
Type=notify
Environment=CLU_HELPER=serve
ExecStart=%s --exec --name %s --memory 64M --pids-max 200 -- %s
ExecStopPost=%s gc %s
`, bin, name, self, bin, name)
	path := "/run/systemd/system/" + unit
	if err := os.WriteFile(path, []byte(unitText), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		run(t, "systemctl", "stop", unit)
		os.Remove(path)
		run(t, "systemctl", "daemon-reload")
		run(t, "systemctl", "reset-failed", unit)
	})
	must(t, "systemctl", "daemon-reload")
	var cg string // the unit's cgroup, once it runs
	check := func(when string, lastPID string) string {
		t.Helper()
		cg = "/sys/fs/cgroup" + show(t, unit, "ControlGroup")
		if st := must(t, "systemctl", "status", "--no-pager", unit); !strings.Contains(st, "active (running)") {
			t.Fatalf("%s: systemctl status:\n%s", when, st)
		}
		mainPID := show(t, unit, "MainPID")
		if mainPID == lastPID {
			t.Errorf("%s: main PID %s is the last start's", when, mainPID)
		}
		ls := list(t)
		i := find(ls, name)
		if i == nil {
			t.Fatalf("%s: level %s not listed: %+v", when, name, ls)
		}
		if fmt.Sprint(i.CmdPID) != mainPID {
			t.Errorf("%s: level's CMD is PID %d, the unit's main PID %s", when, i.CmdPID, mainPID)
		}
		p, ok := i.Cgroups["cgroup2"]
		if !ok || p.Outer != filepath.Join(cg, name) {
			t.Errorf("%s: level's cgroup2 cgroups %+v, want the outer one at %s", when, i.Cgroups, filepath.Join(cg, name))
		}
		// CMD runs in the level's leaf (level/init), where the kernel says.
		leaf := p.Leaf
		if leaf == "" {
			leaf = p.Inner
		}
		procs, _ := os.ReadFile(filepath.Join(leaf, "cgroup.procs"))
		if !strings.HasPrefix(leaf, filepath.Join(cg, name)+"/") || strings.TrimSpace(string(procs)) != mainPID {
			t.Errorf("%s: %s holds %q, want the main PID %s", when, leaf, procs, mainPID)
		}
		if v, _ := os.ReadFile(filepath.Join(cg, name, "memory.max")); strings.TrimSpace(string(v)) != "67108864" {
			t.Errorf("%s: memory.max of the level %q, want 67108864", when, v)
		}
		return mainPID
	}
	must(t, "systemctl", "start", unit)
	pid := check("start", "")
	for i := 1; i <= 3; i++ {
		must(t, "systemctl", "restart", unit)
		pid = check(fmt.Sprintf("restart %d", i), pid)
		if n := len(list(t)); n != 1 {
			t.Errorf("restart %d: %d levels listed, want 1", i, n)
		}
	}
	must(t, "systemctl", "stop", unit)
	if s := show(t, unit, "ActiveState"); s != "inactive" {
		t.Errorf("after stop: %s is %s", unit, s)
	}
	gone(t, name, cg)
}

// scopeRun runs cl-unshare under systemd-run --scope with the JSON status
// on fd 3, and returns the ready event and CMD's output.
func scopeRun(t *testing.T, scopeArgs, clArgs []string, script string) (lvl.Event, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	args := append([]string{"--scope", "--quiet"}, scopeArgs...)
	args = append(append(append(args, bin), clArgs...), "--json-status-fd", "3", "--", "/bin/sh", "-c", script)
	c := exec.Command("systemd-run", args...)
	c.ExtraFiles = []*os.File{w}
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		c.Process.Kill()
		t.Fatalf("systemd-run %v did not end within 60 s: %s", args, out.String())
	}
	if err != nil {
		t.Fatalf("systemd-run %v: %v\n%s", args, err, out.String())
	}
	data, _ := io.ReadAll(r)
	var ready, exit lvl.Event
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e lvl.Event
		if json.Unmarshal([]byte(line), &e) != nil {
			t.Fatalf("status line %q is not JSON", line)
		}
		switch e.Event {
		case "ready":
			ready = e
		case "exit":
			exit = e
		}
	}
	if ready.Event == "" || exit.ExitCode == nil || *exit.ExitCode != 0 {
		t.Fatalf("status through systemd-run: ready %+v, exit %+v; output %s", ready, exit, out.String())
	}
	return ready, out.String()
}

// systemd-run --scope -p Delegate=yes: the level's cgroups are made in
// the scope's, CMD sees its own cgroup root, the status fd passes
// through, and nothing is left when it ends.
func TestDelegatedScope(t *testing.T) {
	requireSystemd(t)
	const unit, name = "clu-scope-1", "scoped"
	t.Cleanup(func() { run(t, "systemctl", "stop", unit+".scope"); run(t, bin, "gc", name) })
	ready, out := scopeRun(t, []string{"--unit", unit, "-p", "Delegate=yes"}, []string{"--name", name, "--memory", "48M"}, "cat /proc/self/cgroup; ls /sys/fs/cgroup/cgroup.controllers; cat /sys/fs/cgroup/memory.max")
	scope := "/sys/fs/cgroup/system.slice/" + unit + ".scope"
	if p := ready.Cgroups["cgroup2"]; p.Outer != filepath.Join(scope, name) {
		t.Errorf("the level's cgroup2 cgroups %+v, want the outer one at %s/%s", ready.Cgroups, scope, name)
	}
	if !strings.Contains(out, "0::/init\n") || !strings.Contains(out, "/sys/fs/cgroup/cgroup.controllers") {
		t.Errorf("CMD's view: %q, want cgroup 0::/init (the level's leaf) and a cgroup2 at /sys/fs/cgroup", out)
	}
	if !strings.Contains(out, "50331648") {
		t.Errorf("CMD's memory.max: %q, want 50331648 (--memory 48M)", out)
	}
	gone(t, name, scope)
}

// A plain cl-unshare from a login-like scope (no delegation: the scope
// hands no controller down) makes its v2 cgroups beside the scope, in
// the user's slice, and removes them.
func TestLoginScope(t *testing.T) {
	requireSystemd(t)
	const unit, name = "session-clu1", "login"
	t.Cleanup(func() { run(t, "systemctl", "stop", unit+".scope"); run(t, bin, "gc", name) })
	ready, _ := scopeRun(t, []string{"--unit", unit, "--slice", "user-1000.slice"}, []string{"--name", name}, "cat /proc/self/cgroup")
	slice := "/sys/fs/cgroup/user.slice/user-1000.slice"
	if p := ready.Cgroups["cgroup2"]; p.Outer != filepath.Join(slice, name) {
		t.Errorf("the level's cgroup2 cgroups %+v, want the outer one at %s/%s, beside the scope", ready.Cgroups, slice, name)
	}
	gone(t, name, slice)
}

// A user who is not root, through README's line: systemd-run --user
// --scope -p Delegate=yes under their own user manager (user@UID), whose
// subtree systemd delegated to them. The level's cgroups are made in the
// scope, its limit is on the outer one, its mirror is the user's to read
// while it runs, and nothing is left when it ends.
func TestUserScope(t *testing.T) {
	requireSystemd(t)
	u, err := user.LookupId("1000")
	if err != nil {
		t.Skipf("needs an account with uid 1000 for a user manager to run as (useradd -u 1000 someone): %v", err)
	}
	// The suite's target starts no bus and no logind: a user manager,
	// and systemd-run --user's bus to it, need both, as on a login.
	for _, u := range []string{"dbus.socket", "systemd-logind.service", "user@1000.service"} {
		if out, err := run(t, "systemctl", "start", u); err != nil {
			j, _ := run(t, "journalctl", "-b", "--no-pager", "-n", "40")
			t.Fatalf("systemctl start %s: %v\n%s\n%s", u, err, out, j)
		}
	}
	t.Cleanup(func() { run(t, "systemctl", "stop", "user@1000.service") })
	xdg, dir := "/run/user/1000", t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	cmd := exec.Command("setpriv", "--reuid", "1000", "--regid", u.Gid, "--init-groups", "env", "XDG_RUNTIME_DIR="+xdg,
		"DBUS_SESSION_BUS_ADDRESS=unix:path="+xdg+"/bus", "systemd-run", "--user", "--scope", "--quiet", "-p", "Delegate=yes",
		bin, "--name", "mine", "--memory", "48M", "--", "sh", "-c",
		"id -u; tail -n 1 /proc/self/cgroup; cat /sys/fs/cgroup/memory.max; touch "+dir+"/ready; while [ ! -e "+dir+"/go ]; do sleep 0.05; done")
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(dir + "/ready"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-run --user --scope cl-unshare did not start the level: %s", buf.String())
		}
	}
	// The user's mirror: links into the launcher's mount namespace.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := os.Stat(xdg + "/cl-unshare/levels/mine/cgroup/cgroup.procs")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the user's mirror: %v", err)
			break
		}
	}
	os.WriteFile(dir+"/go", nil, 0o644)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("systemd-run --user --scope cl-unshare: %v\n%s", err, buf.String())
	}
	if want := "0\n0::/init\n50331648\n"; buf.String() != want {
		t.Errorf("inside the user's level: %q, want %q", buf.String(), want)
	}
	for _, p := range []string{xdg + "/cl-unshare/levels/mine", xdg + "/cl-unshare/state/mine.json"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left", p)
		}
	}
}
