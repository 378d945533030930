package level

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// pollEvery is how often Events looks where the kernel gives no
// notification (cgroup v1's freezer and OOM counters).
const pollEvery = 100 * time.Millisecond

// Events calls emit with what happens to level name until it ends: "oom"
// when the kernel OOM-kills a process of it (OOMKills counts them),
// "frozen" and "thawed", with stats a "usage" sample every interval,
// and last "exit" (with CMD's status where its supervisor recorded it).
// It wakes on inotify of the cgroup2 files that the kernel notifies
// (cgroup.events, memory.events) and of RUN/state, and polls only what
// it does not.
func Events(runDir, name string, interval time.Duration, stats bool, emit func(Event) error) error {
	i, cg, err := findLevel(runDir, name)
	if err != nil {
		return err
	}
	if cg == nil {
		return emit(Event{Event: "exit", Name: name})
	}
	release := holdAsReader(readerLock(cg))
	defer release()
	n, err := watch(runDir, i, cg)
	if err != nil {
		return err
	}
	defer unix.Close(n.fd)
	ooms, frozen := cg.OOMKills(), cg.Frozen()
	next := time.Now().Add(interval)
	for {
		if now := cg.OOMKills(); now > ooms {
			ooms = now
			if err := emit(Event{Event: "oom", Name: name, OOMKills: now}); err != nil {
				return err
			}
		}
		if f := cg.Frozen(); f != frozen {
			frozen = f
			ev := map[bool]string{true: "frozen", false: "thawed"}[f]
			if err := emit(Event{Event: ev, Name: name}); err != nil {
				return err
			}
		}
		if stats && !time.Now().Before(next) {
			s := cg.Spent()
			next = time.Now().Add(interval)
			if err := emit(Event{Event: "usage", Name: name, Usage: &s}); err != nil {
				return err
			}
		}
		if e, over := ended(runDir, name, cg); over {
			release() // the supervisor may tear down now
			return emit(e)
		}
		wait := pollEvery
		if n.all {
			wait = time.Hour
		}
		if stats {
			wait = min(wait, time.Until(next))
		}
		n.wait(max(wait, time.Millisecond))
	}
}

// ended reports whether the level is over, with its exit event: its
// record says how CMD ended (a record that passes the walk's checks: a
// nested one is its parent's to write, and says only what it reports),
// or is gone, or its cgroups are.
func ended(runDir, name string, cg *cgroup.Level) (Event, bool) {
	i, err := lookup(runDir, name)
	var unknown *UnknownError
	switch {
	case errors.As(err, &unknown):
		return Event{Event: "exit", Name: name}, true
	case err == nil && i.Invalid == "" && i.state != nil && i.state.Exit != nil:
		x := i.state.Exit
		code := x.Code
		return Event{Event: "exit", Name: name, ExitCode: &code, How: x.How, Signal: x.Signal, OOMKills: x.OOMKills}, true
	}
	if _, err := os.Stat(cg.Dirs[0].Outer); errors.Is(err, os.ErrNotExist) {
		return Event{Event: "exit", Name: name}, true
	}
	return Event{}, false
}

// notifier is an inotify instance on what announces a level's changes;
// all says every change is announced (nothing needs polling).
type notifier struct {
	fd  int
	all bool
}

func watch(runDir string, i *Info, cg *cgroup.Level) (*notifier, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	n := &notifier{fd: fd, all: true}
	for _, d := range cg.Dirs {
		if !d.V2() {
			n.all = false // v1 freezer.state and memory.oom_control: polled
			continue
		}
		for _, f := range []string{filepath.Join(d.Outer, "cgroup.events"), filepath.Join(d.Inner, "cgroup.events"), filepath.Join(d.Outer, "memory.events")} {
			if _, err := unix.InotifyAddWatch(fd, f, unix.IN_MODIFY); err != nil && !errors.Is(err, unix.ENOENT) {
				n.all = false
			}
		}
	}
	if i.depth == 0 {
		// The supervisor renames the record into place with how CMD ended.
		if _, err := unix.InotifyAddWatch(fd, stateDir(runDir), unix.IN_MOVED_TO|unix.IN_DELETE); err != nil {
			n.all = false
		}
	} else {
		n.all = false // a nested record: read on each poll
	}
	return n, nil
}

// wait waits for a notification, or d, and drains what came.
func (n *notifier) wait(d time.Duration) {
	fds := []unix.PollFd{{Fd: int32(n.fd), Events: unix.POLLIN}}
	_, _ = unix.Poll(fds, int(d.Milliseconds())+1)
	buf := make([]byte, 4096)
	for {
		if k, err := unix.Read(n.fd, buf); k <= 0 || err != nil {
			return
		}
	}
}
