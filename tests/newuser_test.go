package tests

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"testing"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
)

// Issue 9 item 2: --set takes a controller's files, never a core file:
// cgroup.procs=PID moved an unrelated process into the level, and the
// level's teardown killed it.
func TestSetCoreFilesRefused(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	bystander := exec.Command("sleep", "600")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { bystander.Process.Kill(); bystander.Wait() }()
	before := procCgroups(t, bystander.Process.Pid)
	pid := strconv.Itoa(bystander.Process.Pid)
	for _, set := range []string{"cgroup.procs=" + pid, "cgroup.threads=" + pid, "cgroup.kill=1", "cgroup.freeze=1",
		"cgroup.subtree_control=+pids", "cgroup.type=threaded", "tasks=" + pid, "release_agent=/bin/x",
		"notify_on_release=1", "cgroup.clone_children=1"} {
		r := clu(t, "--set", set, "--", "true")
		if r.code != 125 || !oneLine(r.stderr, "--set: ") {
			t.Errorf("--set %s: exit %d, %q", set, r.code, r.stderr)
		}
	}
	if !alive(bystander.Process.Pid) || fmt.Sprint(procCgroups(t, bystander.Process.Pid)) != fmt.Sprint(before) {
		t.Errorf("the bystander was moved or killed: %v, was %v", procCgroups(t, bystander.Process.Pid), before)
	}
	// The Go API applies the same rule, before anything is made.
	_, err := lvl.Start(lvl.Config{Argv: []string{"true"}, CgroupParent: testParent,
		Limits: lvl.Limits{Set: []cgroup.Setting{{File: "cgroup.procs", Value: pid}}}})
	var fe *lvl.FlagError
	if !errors.As(err, &fe) || fe.Flag != "--set" {
		t.Errorf("Start with cgroup.procs: %v, want a --set FlagError", err)
	}
	if v2 := hierarchy(t, "cgroup2"); v2 != nil {
		if r := clu(t, "--set", "cgroup.max.descendants=5", "--", "/bin/sh", "-c", "cat /sys/fs/cgroup"+v2.Mount[len("/sys/fs/cgroup"):]+"/cgroup.max.descendants"); r.code != 0 || r.stdout != "5\n" {
			t.Errorf("--set cgroup.max.descendants=5: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}
	}
}

// Issue 9 item 3: --name "" is a mistake (a script's unset variable),
// not a request for a generated name.
func TestEmptyName(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, args := range [][]string{{"--name", ""}, {"--name="}} {
		c := exec.Command(bin, append(args, "--", "true")...)
		out, _ := c.CombinedOutput()
		if c.ProcessState.ExitCode() != 125 || !oneLine(string(out), "--name: empty name") {
			t.Errorf("%q: exit %d, %q", args, c.ProcessState.ExitCode(), out)
		}
	}
}
