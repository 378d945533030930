package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// memoryOnV2 reports whether the level's memory limit goes to cgroup2
// (a unified host), where memory.oom.group is.
func memoryOnV2(t *testing.T) bool {
	h := hierarchy(t, "cgroup2")
	if h == nil {
		return false
	}
	b, _ := os.ReadFile(filepath.Join(h.Mount, "cgroup.controllers"))
	return slices.Contains(strings.Fields(string(b)), "memory")
}

// An OOM kill is named: a process of the level the kernel OOM-killed is
// counted in list and inspect while the level runs, and when CMD ends
// the exit event has oom_kills, how "oom-killed" if CMD itself died of
// it, and stderr one line with the limit.
func TestOOMNamed(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	noLeaks(t)
	dir := t.TempDir()
	// dd's 64 MiB buffer cannot fit in 32M: the kernel kills dd, not sh.
	// The status is written whole, then renamed into place: a read
	// between echo's open and its write saw an empty file in a slow VM.
	l := start(t, nil, append([]string{"--memory", "32M"}, script(
		"dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo $? > "+dir+"/t; mv "+dir+"/t "+dir+"/dd",
		"sleep 600")...)...)
	if got := strings.TrimSpace(waitFile(t, l, dir+"/dd")); got != "137" {
		t.Fatalf("dd exited %s, want 137 (OOM-killed)", got)
	}
	if i := findInfo(listJSON(t), l.name); i == nil || i.OOMKills != 1 {
		t.Errorf("list --json: %+v, want oom_kills 1", i)
	}
	if r := cmd(t, "inspect", l.name); !strings.Contains(r.stdout, "oom kills:   1") {
		t.Errorf("inspect says:\n%s", r.stdout)
	}
	l.stop(t)

	code, stderr, exit := runStatus(t, "--memory", "32M", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	if code != 137 || exit.How != "oom-killed" || exit.OOMKills != 1 {
		t.Errorf("CMD OOM-killed: exit %d, event %+v; want 137, how oom-killed, oom_kills 1", code, exit)
	}
	want := "1 process OOM-killed (memory limit 32M)"
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.HasSuffix(lines[0], want) {
		t.Errorf("stderr %q, want one line ending %q", stderr, want)
	}
}

// --oom-group: on cgroup2 an OOM kill takes the whole level at once, a
// process that did not ask for memory too; on cgroup v1, which kills one
// process at a time, it is refused in one line.
func TestOOMGroup(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	noLeaks(t)
	args := []string{"--memory", "32M", "--oom-group", "--", "sh", "-c", "sleep 600 & dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; wait"}
	if !memoryOnV2(t) {
		r := clu(t, args...)
		if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "--oom-group") || !strings.Contains(r.stderr, "v1") {
			t.Errorf("--oom-group with memory on v1: exit %d, %q; want 125 and one line", r.code, r.stderr)
		}
		return
	}
	code, _, exit := runStatus(t, args...)
	if code != 137 || exit.How != "oom-killed" || exit.OOMKills < 3 {
		t.Errorf("--oom-group: exit %d, event %+v; want 137, how oom-killed, sh, sleep and dd killed", code, exit)
	}
}
