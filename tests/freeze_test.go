package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
)

// freezer is one way to freeze a cgroup: v2 cgroup.freeze or v1 freezer.state.
type freezer struct {
	name   string
	h      cgroup.Hierarchy
	freeze func(dir string) error
	thaw   func(dir string) error
	frozen func(dir string) bool
	// shell lines to freeze/thaw dir from inside a level
	shFreeze, shThaw string
}

func freezers(t *testing.T) []freezer {
	var out []freezer
	if h := hierarchy(t, "cgroup2"); h != nil {
		if _, err := os.Stat(filepath.Join(h.Dir(h.Path), "cgroup.freeze")); err == nil || h.Path == "/" {
			out = append(out, freezer{name: "cgroup2", h: *h,
				freeze:   func(d string) error { return cgroup.WriteFile(d, "cgroup.freeze", "1") },
				thaw:     func(d string) error { return cgroup.WriteFile(d, "cgroup.freeze", "0") },
				frozen:   func(d string) bool { v, _ := cgroup.KeyValue(d, "cgroup.events", "frozen"); return v == "1" },
				shFreeze: "echo 1 > %s/cgroup.freeze", shThaw: "echo 0 > %s/cgroup.freeze"})
		}
	}
	if h := hierarchy(t, "freezer"); h != nil && !h.V2() {
		out = append(out, freezer{name: "v1 freezer", h: *h,
			freeze:   func(d string) error { return cgroup.WriteFile(d, "freezer.state", "FROZEN") },
			thaw:     func(d string) error { return cgroup.WriteFile(d, "freezer.state", "THAWED") },
			frozen:   func(d string) bool { v, _ := cgroup.ReadFile(d, "freezer.state"); return v == "FROZEN" },
			shFreeze: "echo FROZEN > %s/freezer.state", shThaw: "echo THAWED > %s/freezer.state"})
	}
	if len(out) == 0 {
		requires(t, "freezer")
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sigPending reports whether signal n is pending for pid.
func sigPending(pid, n int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "SigPnd" || k == "ShdPnd" {
			mask, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if mask&(1<<(n-1)) != 0 {
				return true
			}
		}
	}
	return false
}

// The host freezing the inner cgroup freezes every process of the
// level, never the launcher, which still forwards signals meanwhile.
func TestHostFreezesLevel(t *testing.T) {
	requires(t, "root", "cgroupns")
	self, _ := os.Executable()
	for _, f := range freezers(t) {
		t.Run(f.name, func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			l := start(t, nil, script(
				fmt.Sprintf("CLU_HELPER=ticker %s %s/tick &", self, dir),
				"trap 'echo got > "+dir+"/usr1; exit 42' USR1",
				"echo $$ > "+dir+"/pid",
				"while :; do sleep 0.01; done")...)
			pid := pidOf(t, l, dir+"/pid")
			waitFile(t, l, dir+"/tick")
			inner := filepath.Join(outer(f.h, l.name), cgroup.InnerName)
			// v1 can stay FREEZING while a task is busy in the kernel;
			// writing FROZEN again retries, as the kernel's docs say.
			waitFor(t, "frozen", func() bool {
				if err := f.freeze(inner); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
				return f.frozen(inner)
			})
			a := mustRead(t, dir+"/tick")
			time.Sleep(100 * time.Millisecond)
			if b := mustRead(t, dir+"/tick"); a != b {
				t.Errorf("ticker went on while frozen: %s -> %s", a, b)
			}
			launcher := l.cmd.Process.Pid
			for _, p := range procCgroups(t, launcher) {
				if strings.Contains(p, l.name) {
					t.Errorf("launcher is in the level's cgroup %s", p)
				}
			}
			// The launcher forwards SIGUSR1 while CMD is frozen: it stays
			// pending on CMD until the thaw.
			l.cmd.Process.Signal(syscallUSR1)
			waitFor(t, "SIGUSR1 pending on the frozen CMD", func() bool { return sigPending(pid, 10) })
			if _, err := os.Stat(dir + "/usr1"); err == nil {
				t.Errorf("CMD handled the signal while frozen")
			}
			if err := f.thaw(inner); err != nil {
				t.Fatal(err)
			}
			if r := l.wait(t); r.code != 42 {
				t.Errorf("exit %d after thaw, want 42 (CMD's trap): %s", r.code, r.stderr)
			}
		})
	}
}

// Inside, freezing a child cgroup freezes only the processes in it.
func TestLevelFreezesChild(t *testing.T) {
	requires(t, "root", "cgroupns")
	self, _ := os.Executable()
	for _, f := range freezers(t) {
		t.Run(f.name, func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			in := insideDir(f.h) + "/sub"
			l := start(t, nil, script(
				"mkdir "+in+" || exit 10",
				fmt.Sprintf("CLU_HELPER=ticker %s %s/subtick & echo $! > %s/cgroup.procs || exit 11", self, dir, in),
				fmt.Sprintf("CLU_HELPER=ticker %s %s/maintick & M=$!", self, dir),
				"while [ ! -e "+dir+"/subtick ] || [ ! -e "+dir+"/maintick ]; do sleep 0.01; done",
				fmt.Sprintf(f.shFreeze, in)+" || exit 12",
				"echo ok > "+dir+"/frozen",
				"while [ ! -e "+dir+"/go ]; do sleep 0.01; done",
				fmt.Sprintf(f.shThaw, in),
				"kill $M $(cat "+in+"/cgroup.procs); wait",
				"rmdir "+in,
			)...)
			waitFile(t, l, dir+"/frozen")
			time.Sleep(20 * time.Millisecond)
			sub1, main1 := mustRead(t, dir+"/subtick"), mustRead(t, dir+"/maintick")
			time.Sleep(150 * time.Millisecond)
			sub2, main2 := mustRead(t, dir+"/subtick"), mustRead(t, dir+"/maintick")
			if sub1 != sub2 {
				t.Errorf("process in the frozen child cgroup went on: %s -> %s", sub1, sub2)
			}
			if main1 == main2 {
				t.Errorf("process outside the frozen child cgroup stopped at %s", main1)
			}
			os.WriteFile(dir+"/go", nil, 0o644)
			if r := l.wait(t); r.code != 0 {
				t.Errorf("exit %d: %s", r.code, r.stderr)
			}
		})
	}
}
