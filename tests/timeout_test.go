package tests

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
)

// runStatus runs cl-unshare with a JSON status fd and returns its exit
// code, stderr and the exit event.
func runStatus(t *testing.T, args ...string) (int, string, lvl.Event) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stderr strings.Builder
	c := exec.Command(bin, append([]string{"--cgroup-parent", testParent, "--json-status-fd", "3"}, args...)...)
	c.ExtraFiles, c.Stderr = []*os.File{w}, &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var exit lvl.Event
	for s := bufio.NewScanner(r); s.Scan(); {
		var e lvl.Event
		if json.Unmarshal(s.Bytes(), &e) == nil && e.Event == "exit" {
			exit = e
		}
	}
	c.Wait()
	return c.ProcessState.ExitCode(), stderr.String(), exit
}

// --timeout stops a level as timeout(1) stops a command: SIGTERM to every
// process of it, exit 124; SIGKILL through the cgroup after --kill-after
// for what ignores SIGTERM, exit 137; a command that ends in time keeps
// its own status. The exit event says "timeout".
func TestTimeout(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, c := range []struct {
		what string
		args []string
		code int
		how  string
	}{
		{"sleep past the limit", []string{"--timeout", "0.3s", "--", "sleep", "600"}, 124, "timeout"},
		// A child that ignores SIGTERM too: every process gets it, and
		// SIGKILL reaches them all through the cgroup. 2 s, for both
		// shells to have set their trap even in a VM without KVM.
		{"SIGTERM ignored", []string{"--timeout", "2s", "--kill-after", "0.3", "--", "sh", "-c", `trap "" TERM; sh -c 'trap "" TERM; sleep 600' & sleep 600`}, 137, "timeout"},
		{"in time", []string{"--timeout", "1m", "--", "sh", "-c", "exit 3"}, 3, "exited"},
	} {
		code, stderr, exit := runStatus(t, c.args...)
		if code != c.code || exit.ExitCode == nil || *exit.ExitCode != c.code || exit.How != c.how {
			t.Errorf("%s: exit %d, event %+v; want %d, how %q (stderr %q)", c.what, code, exit, c.code, c.how, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if c.how == "timeout" && (len(lines) != 1 || !strings.Contains(lines[0], "--timeout")) {
			t.Errorf("%s: stderr %q, want one line naming --timeout", c.what, stderr)
		}
		if c.how != "timeout" && stderr != "" {
			t.Errorf("%s: stderr %q, want nothing", c.what, stderr)
		}
	}
}

// Bad --timeout and --kill-after values: 125, one line naming the flag,
// nothing started.
func TestTimeoutBadInput(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--timeout", "0"}, "--timeout"}, {[]string{"--timeout", "-1s"}, "--timeout"},
		{[]string{"--timeout", "soon"}, "--timeout"}, {[]string{"--kill-after", "1s"}, "--kill-after"},
		{[]string{"--timeout", "1s", "--kill-after", "0"}, "--kill-after"}, {[]string{"--exec", "--timeout", "1s"}, "--timeout"},
	} {
		r := clu(t, append(c.args, "--", "true")...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 125 || len(lines) != 1 || !strings.Contains(lines[0], c.flag) {
			t.Errorf("%v: exit %d, stderr %q; want 125 and one line naming %s", c.args, r.code, r.stderr, c.flag)
		}
	}
}

// Config.Timeout through the Go API: Wait's *StoppedError has Code 124,
// which ErrorCode gives.
func TestAPITimeout(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	l, err := lvl.Start(lvl.Config{CgroupParent: testParent, Argv: []string{"sleep", "600"}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.Wait()
	var stopped *lvl.StoppedError
	if !errors.As(err, &stopped) || stopped.Code != 124 || lvl.ErrorCode(err) != 124 || !strings.Contains(err.Error(), "Config.Timeout") {
		t.Errorf("Wait: %v (code %d), want a *StoppedError with Code 124 naming Config.Timeout", err, lvl.ErrorCode(err))
	}
	if _, err := lvl.Start(lvl.Config{Argv: []string{"true"}, KillAfter: time.Second}); err == nil || !strings.Contains(err.Error(), "Config.KillAfter: needs Config.Timeout") {
		t.Errorf("KillAfter alone: %v", err)
	}
}
