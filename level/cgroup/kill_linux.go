package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"

	"golang.org/x/sys/unix"
)

// killTimeout bounds how long Kill waits for the kernel to empty a level.
const killTimeout = 10 * time.Second

// Kill kills every process left in the level, nested cgroups included, and
// waits until none is left. cgroup.kill (5.14) does it in one write and
// catches processes forked meanwhile; without it, a freezer (cgroup.freeze
// from 5.2, or the v1 one) holds the level still while each task gets
// SIGKILL; without either, we kill what we see until nothing is left.
func (l *Level) Kill() error {
	d := l.V2()
	if d != nil && failpoint.At("cgroup.kill") == nil {
		if _, err := os.Stat(filepath.Join(d.Outer, "cgroup.kill")); err == nil {
			if err := WriteFile(d.Outer, "cgroup.kill", "1"); err != nil {
				if gone(err) {
					return nil
				}
				return err
			}
			// A task frozen by the v1 freezer cannot die until thawed.
			l.thawV1()
			return waitEmpty(d.Outer)
		}
	}
	if d != nil {
		if _, err := os.Stat(filepath.Join(d.Outer, "cgroup.freeze")); err == nil {
			return l.freezeKill(d.Outer, v2Freezer)
		}
	}
	for _, d := range l.Dirs {
		if !d.V2() && d.Has("freezer") {
			return l.freezeKill(d.Outer, v1Freezer)
		}
	}
	dir := l.Dirs[0].Outer
	deadline := time.Now().Add(killTimeout)
	for time.Now().Before(deadline) {
		pids, err := Procs(dir)
		if err != nil || len(pids) == 0 {
			return err
		}
		killAll(pids)
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("processes are still left in %s after %s", dir, killTimeout)
}

// thawV1 thaws every v1 freezer cgroup of the level, nested ones too.
func (l *Level) thawV1() {
	for _, d := range l.Dirs {
		if !d.V2() && d.Has("freezer") {
			thawTree(d.Outer)
		}
	}
}

// thawTree thaws the v1 freezer cgroup dir and every one below it.
func thawTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = WriteFile(p, "freezer.state", "THAWED")
		}
		return nil
	})
}

func killAll(pids []int) {
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
}

// A freezer: the file and the values that freeze and thaw.
type freezer struct{ file, freeze, thaw string }

var (
	v2Freezer = freezer{"cgroup.freeze", "1", "0"}
	v1Freezer = freezer{"freezer.state", "FROZEN", "THAWED"}
)

// frozen reports whether the kernel says dir is frozen.
func (f freezer) frozen(dir string) bool {
	if f == v1Freezer {
		v, err := ReadFile(dir, "freezer.state")
		return err == nil && v == "FROZEN"
	}
	v, err := KeyValue(dir, "cgroup.events", "frozen")
	return err == nil && v == "1"
}

// freezeKill freezes dir so nothing in it can fork, kills every task and
// thaws, until no task is left.
func (l *Level) freezeKill(dir string, f freezer) error {
	deadline := time.Now().Add(killTimeout)
	for time.Now().Before(deadline) {
		pids, err := Procs(dir)
		if gone(err) {
			return nil // removed meanwhile, by its supervisor
		}
		if err != nil || len(pids) == 0 {
			return err
		}
		if err := WriteFile(dir, f.file, f.freeze); err != nil {
			if gone(err) {
				return nil
			}
			return err
		}
		// Let the freeze complete before the kill and the thaw: cycling a
		// half-frozen cgroup only repeats both, and each cycle flips the
		// kernel's freezer static key, patching live code (two test VMs
		// under TCG locked up in get_signal while this cycled fast).
		for settle := time.Now().Add(200 * time.Millisecond); !f.frozen(dir) && time.Now().Before(settle); {
			time.Sleep(time.Millisecond)
			// A v1 cgroup can stay FREEZING while a task is busy; writing
			// again retries it.
			_ = WriteFile(dir, f.file, f.freeze)
		}
		pids, _ = Procs(dir)
		killAll(pids)
		if err := WriteFile(dir, f.file, f.thaw); err != nil && !gone(err) {
			return err
		}
		// A task frozen by the v1 freezer dies only once thawed, and a v1
		// cgroup the level froze itself stays frozen when its parent
		// thaws (on hybrid hosts too, whichever freezer held it here).
		l.thawV1()
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("processes are still left in %s after %s", dir, killTimeout)
}

// waitEmpty waits until cgroup.events says no process is left below dir.
func waitEmpty(dir string) error {
	deadline := time.Now().Add(killTimeout)
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		v, err := KeyValue(dir, "cgroup.events", "populated")
		if err != nil {
			// The cgroup went away (its supervisor removed it meanwhile):
			// ENOENT, or ENODEV for a file open while it was removed.
			if gone(err) {
				return nil
			}
			return err
		}
		if v == "0" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes are still left in %s after %s", dir, killTimeout)
		}
		time.Sleep(delay)
	}
}

// Empty reports whether no process is left in the level.
func (l *Level) Empty() bool {
	if d := l.V2(); d != nil {
		v, err := KeyValue(d.Outer, "cgroup.events", "populated")
		return err != nil || v == "0"
	}
	pids, err := Procs(l.Dirs[0].Outer)
	return err != nil || len(pids) == 0
}

// waitFor polls cond until it holds, fails, or killTimeout passes.
func waitFor(cond func() (bool, error)) error {
	deadline := time.Now().Add(killTimeout)
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the kernel did not report it done within %s", killTimeout)
		}
		time.Sleep(delay)
	}
}

// gone reports whether err means the cgroup no longer exists.
func gone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV)
}
