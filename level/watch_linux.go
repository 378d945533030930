package level

import (
	"os"
	"strconv"
	"syscall"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// watchMarker is argv[0] of the --kill-child watchdog.
const watchMarker = "cl-unshare [watch]"

// isWatch reports whether this process is a --kill-child watchdog.
func isWatch() bool { return len(os.Args) > 0 && os.Args[0] == watchMarker }

// startWatch starts the --kill-child watchdog: a small process outside the
// level that outlives a killed supervisor and then signals every process
// of the level, not only CMD (which also gets the signal as its
// parent-death signal).
func (l *Level) startWatch(sig unix.Signal) error {
	w := reexec(watchMarker, l.runDir, l.Name, strconv.Itoa(int(sig)),
		strconv.Itoa(l.state.Supervisor.PID), strconv.FormatUint(l.state.Supervisor.Start, 10))
	// Its own process group: a signal to the supervisor's group must not
	// take the watchdog with it.
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := w.Start(); err != nil {
		return fieldErr("Config.KillSignal", "start watchdog: %w", err)
	}
	l.watch = w
	return nil
}

// watchMain is the watchdog: it waits for the supervisor to die, then, if
// the level is still there (a supervisor that ended normally removed it),
// sends the signal to all of it.
func watchMain(args []string) int {
	if len(args) != 5 {
		return 2
	}
	runDir, name := args[0], args[1]
	sig, _ := strconv.Atoi(args[2])
	pid, _ := strconv.Atoi(args[3])
	start, _ := strconv.ParseUint(args[4], 10, 64)
	sup := Proc{PID: pid, Start: start}
	if fd, err := unix.PidfdOpen(pid, 0); err == nil && sup.Alive() {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				break
			}
		}
		unix.Close(fd)
	}
	s, err := readState(runDir, name)
	if err != nil || s.Supervisor != sup {
		return 0 // cleaned up, or another level of that name now
	}
	cg, err := cgroup.Adopt(s.Outer)
	if err != nil || len(cg.Dirs) == 0 {
		return 1
	}
	if unix.Signal(sig) == unix.SIGKILL {
		_ = cg.Kill()
	} else {
		_, _ = cg.Signal(unix.Signal(sig))
	}
	return 0
}
