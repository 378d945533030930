package tests

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"golang.org/x/sys/unix"
)

// cl-unshare events NAME writes, as they happen, a freeze and a thaw, an
// OOM kill, usage samples with --stats, and last the exit with CMD's
// status; then it ends.
func TestEvents(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, append([]string{"--memory", "32M"}, script(
		"echo $$ > "+dir+"/pid",
		"while [ ! -e "+dir+"/go ]; do sleep 0.01; done",
		"dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null",
		"while [ ! -e "+dir+"/go2 ]; do sleep 0.01; done",
		"exit 3")...)...)
	pidOf(t, l, dir+"/pid")
	ev := exec.Command(bin, "events", l.name, "--stats", "--interval", "200ms")
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer ev.Process.Kill()
	lines := make(chan lvl.Event, 100)
	go func() {
		for s := bufio.NewScanner(out); s.Scan(); {
			var e lvl.Event
			if json.Unmarshal(s.Bytes(), &e) == nil {
				lines <- e
			}
		}
		close(lines)
	}()
	next := func(want string) lvl.Event {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case e, ok := <-lines:
				if !ok {
					t.Fatalf("events ended before %q", want)
				}
				if e.Event == want {
					return e
				}
				if e.Event != "usage" {
					t.Fatalf("event %+v before %q", e, want)
				}
			case <-deadline:
				t.Fatalf("no %q event", want)
			}
		}
	}
	if u := next("usage"); u.Usage == nil || u.Name != l.name {
		t.Errorf("usage event %+v", u)
	}
	cmd(t, "freeze", l.name)
	next("frozen")
	cmd(t, "thaw", l.name)
	next("thawed")
	os.WriteFile(dir+"/go", nil, 0o644)
	if e := next("oom"); e.OOMKills != 1 {
		t.Errorf("oom event %+v, want oom_kills 1", e)
	}
	os.WriteFile(dir+"/go2", nil, 0o644)
	if e := next("exit"); e.ExitCode == nil || *e.ExitCode != 3 || e.How != "exited" || e.OOMKills != 1 {
		t.Errorf("exit event %+v, want exit_code 3, how exited, oom_kills 1", e)
	}
	if err := ev.Wait(); err != nil {
		t.Errorf("events after the exit: %v", err)
	}
	for _, args := range [][]string{{"events", "no-such-level"}, {"events", l.name, "--interval", "0"}} {
		if r := cmd(t, args...); r.code != 125 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want 125 and one line", args, r.code, r.stderr)
		}
	}
}

// A reader that runs late still learns CMD's status: the supervisor waits
// (a bounded time) for an events reader before it removes the record that
// says how CMD ended. The reader is stopped while CMD exits; without the
// wait it would wake to a level already gone and report no exit code.
func TestEventsLateReader(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	l := start(t, nil, script(
		"echo $$ > "+dir+"/pid",
		"while [ ! -e "+dir+"/go ]; do sleep 0.01; done",
		"exit 5")...)
	pidOf(t, l, dir+"/pid")
	ev := exec.Command(bin, "events", l.name, "--stats", "--interval", "100ms")
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer ev.Process.Kill()
	s := bufio.NewScanner(out)
	if !s.Scan() { // a first usage sample: the reader is in its loop
		t.Fatalf("events printed nothing")
	}
	ev.Process.Signal(unix.SIGSTOP)
	os.WriteFile(dir+"/go", nil, 0o644)
	time.Sleep(time.Second)
	ev.Process.Signal(unix.SIGCONT)
	var last lvl.Event
	for s.Scan() {
		json.Unmarshal(s.Bytes(), &last)
	}
	if last.Event != "exit" || last.ExitCode == nil || *last.ExitCode != 5 {
		t.Errorf("last event %+v, want exit with exit_code 5", last)
	}
	if r := l.wait(t); r.code != 5 {
		t.Errorf("cl-unshare exit %d, want 5; stderr %q", r.code, r.stderr)
	}
}
