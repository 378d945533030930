package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// A cgroup a service manager delegated (systemd's trusted.delegate xattr)
// keeps the levels started in it: a launcher alone there moves into its
// supervisor leaf and hands the controllers down, where without the mark
// the level goes one step up, beside the launcher's cgroup (a login
// session). v1 hierarchies place levels below the launcher either way.
// The systemd VM layout checks the same under a real systemd.
func TestDelegatedCgroup(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, delegated := range []bool{false, true} {
		t.Run(fmt.Sprintf("delegated=%v", delegated), func(t *testing.T) {
			h := hierarchy(t, "cgroup2")
			if h == nil {
				h = &hierarchies(t)[0]
			}
			parent := h.Dir(filepath.Join(cgroup.Base(*h), testParent))
			d := filepath.Join(parent, fmt.Sprintf("deleg-%d-%v", os.Getpid(), delegated))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(filepath.Join(d, cgroup.SupervisorLeaf)); os.Remove(d); os.Remove(parent) })
			var mem bool // the level can get a memory limit on cgroup2 here
			if h.V2() {
				// Offer D every controller its parent has, as a slice offers a unit.
				have, _ := cgroup.Fields(parent, "cgroup.controllers")
				for _, c := range have {
					cgroup.WriteFile(parent, "cgroup.subtree_control", "+"+c)
				}
				got, _ := cgroup.Fields(d, "cgroup.controllers")
				mem = slices.Contains(got, "memory")
			}
			if delegated {
				if err := unix.Setxattr(d, "trusted.delegate", []byte("1"), 0); err != nil {
					t.Fatalf("mark %s delegated: %v", d, err)
				}
			}
			name := fmt.Sprintf("deleg%d-%v", os.Getpid(), delegated)
			status := filepath.Join(t.TempDir(), "status")
			args := []string{"--name", name, "--json-status-fd", "3"}
			if mem {
				args = append(args, "--memory", "32M")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, "sh", append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@" 3> "$STATUS"`, d, bin},
				append(args, "--", "sh", "-c", "cat "+h.Mount+"/memory.max 2>/dev/null; true")...)...)
			c.Env = append(os.Environ(), "STATUS="+status)
			out, err := c.CombinedOutput()
			t.Cleanup(func() { exec.Command(bin, "gc", name).Run() })
			if err != nil {
				t.Fatalf("cl-unshare in %s: %v\n%s", d, err, out)
			}
			ready := readyEvent(t, status)
			want := filepath.Join(d, name) // below the launcher's cgroup
			if h.V2() && !delegated {
				want = filepath.Join(parent, name) // beside it (Base)
			}
			if got := ready.Cgroups[h.Name()].Outer; got != want {
				t.Errorf("the level's outer %s cgroup is %s, want %s", h.Name(), got, want)
			}
			if delegated && mem {
				if !strings.Contains(string(out), "33554432") {
					t.Errorf("CMD's memory.max: %q, want 33554432 (--memory 32M)", out)
				}
				if on, _ := cgroup.Fields(d, "cgroup.subtree_control"); !slices.Contains(on, "memory") {
					t.Errorf("%s hands down %v, want memory enabled for the level", d, on)
				}
				if _, err := os.Stat(filepath.Join(d, cgroup.SupervisorLeaf)); err != nil {
					t.Errorf("no supervisor leaf in %s: %v", d, err)
				}
			}
		})
	}
}

// readyEvent reads the ready line of a JSON status file.
func readyEvent(t *testing.T, path string) lvl.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		var e lvl.Event
		if json.Unmarshal(s.Bytes(), &e) == nil && e.Event == "ready" {
			return e
		}
	}
	t.Fatalf("no ready event in %s", path)
	return lvl.Event{}
}
