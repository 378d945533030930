package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
)

// update changes a running level's limits: a 48M hog that a 32M level
// OOM-kills lives once update --memory 64M raised it, and a level
// updated to --pids-max 5 cannot fork a sixth task. inspect shows the
// new values.
func TestUpdateLimits(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	noLeaks(t)
	dir := t.TempDir()
	// Each result is written whole, then renamed into place.
	hog := func(f string) string {
		return "dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null; echo $? > " + dir + "/t; mv " + dir + "/t " + dir + "/" + f
	}
	l := start(t, nil, append([]string{"--memory", "32M"}, script(
		hog("before"),
		"while [ ! -e "+dir+"/go ]; do sleep 0.01; done",
		hog("after"),
		"while [ ! -e "+dir+"/go2 ]; do sleep 0.01; done",
		// A failed fork ends the shell that tried: a subshell tries.
		"(for i in 1 2 3 4 5 6 7 8; do sleep 600 & done) 2>/dev/null; echo forked > "+dir+"/forked",
		"exec sleep 600")...)...)
	if got := strings.TrimSpace(waitFile(t, l, dir+"/before")); got != "137" {
		t.Fatalf("hog under 32M exited %s, want 137 (OOM-killed)", got)
	}
	if r := cmd(t, "update", l.name, "--memory", "64M"); r.code != 0 {
		t.Fatalf("update --memory 64M: exit %d: %s", r.code, r.stderr)
	}
	os.WriteFile(dir+"/go", nil, 0o644)
	if got := strings.TrimSpace(waitFile(t, l, dir+"/after")); got != "0" {
		t.Errorf("hog after update --memory 64M exited %s, want 0", got)
	}
	if r := cmd(t, "update", l.name, "--pids-max", "5"); r.code != 0 {
		t.Fatalf("update --pids-max 5: exit %d: %s", r.code, r.stderr)
	}
	os.WriteFile(dir+"/go2", nil, 0o644)
	waitFile(t, l, dir+"/forked")
	// Five tasks at most: the shell, the subshell and three sleeps; the
	// fork of a fourth failed. The subshell is gone since.
	pids := controller(t, "pids")
	if got := strings.TrimSpace(mustRead(t, outer(pids.h, l.name)+"/pids.current")); got != "4" {
		t.Errorf("pids.current %s after forking 8 under --pids-max 5, want 4 (the shell, now a sleep, and 3 sleeps)", got)
	}
	// Which cgroup counts the refusal differs by kernel (the limiting
	// one, or, as on Linux 6.1, the forking task's: a cgroup2 leaf).
	ev := ""
	filepath.WalkDir(outer(pids.h, l.name), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			b, _ := os.ReadFile(filepath.Join(p, "pids.events"))
			ev += string(b)
		}
		return nil
	})
	if !regexp.MustCompile(`max [1-9]`).MatchString(ev) {
		t.Errorf("pids.events %q: no fork was refused", ev)
	}
	info := findInfo(listJSON(t), l.name)
	mem := "memory.max"
	if !controller(t, "memory").v2 {
		mem = "memory.limit_in_bytes"
	}
	if info == nil || info.Limits[mem] != "67108864" || info.Limits["pids.max"] != "5" {
		t.Errorf("list shows limits %v, want %s=67108864 and pids.max=5", info.Limits, mem)
	}
}

// update refuses, in one line and changing nothing: an unknown level, a
// level whose supervisor is gone, a controller the host lacks, a bad
// value, no limit at all. Inside a level, a sibling is unknown, and its
// own nested level is updated.
func TestUpdateBadInput(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, script("echo $$ > "+dir+"/pid", "sleep 600")...)
	pidOf(t, l, dir+"/pid")
	for _, args := range [][]string{
		{"update", "no-such-level", "--memory", "64M"},
		{"update", l.name, "--set", "bogus.x=1"},
		{"update", l.name, "--memory", "10XB"},
		{"update", l.name},
	} {
		r := cmd(t, args...)
		if r.code != 125 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want 125 and one line", args, r.code, r.stderr)
		}
	}
	// A nested level, updated from inside its parent; the host, from
	// inside, is not there to update.
	k := start(t, nil, script(
		bin+" --name kid --memory 32M -- sleep 600 & while ! "+bin+" update kid --memory 64M 2>/dev/null; do sleep 0.05; done",
		"echo ok > "+dir+"/kid",
		bin+" update "+l.name+" --memory 64M 2> "+dir+"/s; echo $? >> "+dir+"/s; mv "+dir+"/s "+dir+"/sibling",
		"sleep 600")...)
	waitFile(t, k, dir+"/kid")
	if got := waitFile(t, k, dir+"/sibling"); !strings.Contains(got, "no level named") || !strings.HasSuffix(strings.TrimSpace(got), "125") {
		t.Errorf("update of a sibling from inside a level: %q", got)
	}
	mem := controller(t, "memory")
	file := "memory.limit_in_bytes"
	if mem.v2 {
		file = "memory.max"
	}
	if got := mustRead(t, outer(mem.h, k.name)+"/"+cgroup.InnerName+"/kid/"+file); strings.TrimSpace(got) != "67108864" {
		t.Errorf("nested level's %s is %s after update from inside, want 67108864", file, got)
	}
	// A level whose supervisor is gone is not running: refused.
	l.cmd.Process.Signal(syscall.SIGKILL)
	<-l.done
	if r := cmd(t, "update", l.name, "--memory", "64M"); r.code != 125 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("update of an orphaned level: exit %d, %q", r.code, r.stderr)
	}
	cmd(t, "gc", l.name)
}
