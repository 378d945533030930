package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
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
	requires(t, "root", "cgroupns", "cgroup2")
	noLeaks(t)
	dir, xdg := delegated(t, true), runtimeDir(t)
	run := filepath.Join(xdg, "cl-unshare")
	have, _ := cgroup.Fields(dir, "cgroup.controllers")
	var limits []string
	if slices.Contains(have, "memory") && slices.Contains(have, "pids") {
		limits = []string{"--memory", "64M", "--pids", "40"}
	} else {
		// A hybrid host's cgroup2 has no controllers: a limit is refused,
		// naming the cgroup that would have to offer it.
		r := runAsUser(t, dir, xdg, "--memory", "64M", "--", "true")
		if r.code != 125 || !oneLine(r.stderr, "--memory: the memory controller is not delegated to you: your cgroup "+dir) {
			t.Errorf("--memory without the memory controller: exit %d, %q", r.code, r.stderr)
		}
	}
	ready := filepath.Join(xdg, "ready")
	script := fmt.Sprintf(`id -u; tail -n 1 /proc/self/cgroup; mkdir /sys/fs/cgroup/made-inside && touch %s && sleep 60`, ready)
	cmd := asUser(t, dir, xdg, append(append([]string{"--name", "rl"}, limits...), "--", "sh", "-c", script)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the level did not start: %s%s", out.String(), errb.String())
		}
	}
	// The host side, as the user sees it.
	mirror := filepath.Join(run, "levels", "rl", "cgroup")
	if _, err := os.Stat(filepath.Join(mirror, "made-inside", "cgroup.procs")); err != nil {
		t.Errorf("the mirror %s does not show the level's own cgroup: %v", mirror, err)
	}
	outer := filepath.Join(dir, "rl")
	if len(limits) > 0 {
		if b, _ := os.ReadFile(filepath.Join(outer, "memory.max")); strings.TrimSpace(string(b)) != "67108864" {
			t.Errorf("outer memory.max = %q, want 67108864", b)
		}
		if b, _ := os.ReadFile(filepath.Join(outer, "pids.max")); strings.TrimSpace(string(b)) != "40" {
			t.Errorf("outer pids.max = %q, want 40", b)
		}
	} else if _, err := os.Stat(outer); err != nil {
		t.Errorf("no outer cgroup at %s: %v", outer, err)
	}
	if r := runAsUser(t, dir, xdg, "list"); r.code != 0 || !strings.Contains(r.stdout, "rl ") {
		t.Errorf("list as the user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runAsUser(t, dir, xdg, "kill", "rl"); r.code != 0 {
		t.Errorf("kill as the user: exit %d, %q", r.code, r.stderr)
	}
	err := cmd.Wait()
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) < 2 || lines[0] != "0" || !strings.HasPrefix(lines[1], "0::/") || strings.Contains(lines[1], testParent) {
		t.Errorf("inside: %q (want uid 0 and a cgroup line rooted at the level), %v %s", out.String(), err, errb.String())
	}
	for _, p := range []string{outer, filepath.Join(run, "levels", "rl"), filepath.Join(run, "state", "rl.json")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after the level ended", p)
		}
	}
}

// Where a user cannot have a level, one line says what to do, exit 125.
func TestRootlessRefused(t *testing.T) {
	requires(t, "root", "cgroupns", "cgroup2")
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
	} {
		r := runAsUser(t, delegated(t, c.chown), xdg, c.args...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%s: exit %d, %q; want 125 and one line saying %q", c.name, r.code, r.stderr, c.want)
		}
	}
}
