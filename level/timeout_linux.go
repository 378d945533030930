package level

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultKillAfter is how long a level that ran past Config.Timeout has,
// after SIGTERM, before SIGKILL.
const DefaultKillAfter = 10 * time.Second

// Exit codes of a level stopped for its time limit, as timeout(1) has
// them: 124, or 128+SIGKILL when SIGTERM did not end it.
const (
	timeoutCode       = 124
	timeoutKilledCode = 128 + int(unix.SIGKILL)
)

// startTimeout stops the level once cfg.Timeout has passed since it was
// ready, as timeout(1) stops a command: SIGTERM to every process of it,
// then, if any is left after Config.KillAfter, SIGKILL through the
// cgroup. Close ends the wait.
func (l *Level) startTimeout(cfg Config) {
	after := cfg.KillAfter
	if after == 0 {
		after = DefaultKillAfter
	}
	l.untimed = make(chan struct{})
	go func() {
		select {
		case <-l.untimed:
			return
		case <-time.After(cfg.Timeout):
		}
		if !l.stop(fmt.Sprintf("it ran past Config.Timeout %s", cfg.Timeout), timeoutCode) {
			return
		}
		_, _ = l.cgroups.Signal(unix.SIGTERM)
		select {
		case <-l.untimed:
			return
		case <-time.After(after):
		}
		if l.stop(fmt.Sprintf("it ran past Config.Timeout %s and was still running Config.KillAfter %s after SIGTERM", cfg.Timeout, after), timeoutKilledCode) {
			_ = l.cgroups.Kill()
		}
	}()
}

// stop records why cl-unshare stops the level and the exit code that
// says so (0: the command's own); false if the level is already closed.
func (l *Level) stop(why string, code int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.stopped, l.stoppedCode = why, code
	return true
}
