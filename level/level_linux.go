package level

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cl-unshare/cl-unshare/internal/exitcode"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"golang.org/x/sys/unix"
)

// Pid is the PID of the level's command (the init stage exec'd into it).
func (l *Level) Pid() int {
	if l.remote != nil {
		return l.remote.pid
	}
	return l.st.cmd.Process.Pid
}

// Signal sends sig to the level's command.
func (l *Level) Signal(sig os.Signal) error {
	if l.remote != nil {
		s, ok := sig.(syscall.Signal)
		if !ok {
			return fmt.Errorf("signal %v: not a system signal", sig)
		}
		return l.signalRemote(s)
	}
	return l.st.cmd.Process.Signal(sig)
}

// InnerCgroups lists the level's inner cgroup directory in every hierarchy,
// keyed by hierarchy name ("cgroup2", "memory", "name=systemd").
func (l *Level) InnerCgroups() map[string]string {
	m := map[string]string{}
	for _, d := range l.cgroups.Dirs {
		m[d.Name()] = d.Inner
	}
	return m
}

// OuterCgroups lists the level's outer cgroup directory in every hierarchy.
func (l *Level) OuterCgroups() map[string]string {
	m := map[string]string{}
	for _, d := range l.cgroups.Dirs {
		m[d.Name()] = d.Outer
	}
	return m
}

// StoppedError says why cl-unshare stopped a level before its command
// ended; Status is the command's wait status.
type StoppedError struct {
	Name   string
	Why    string
	Status syscall.WaitStatus
	// Code, if not 0, is the exit code that says why (124 for a level
	// that ran past Config.Timeout, as timeout(1)); else CMD's status.
	Code int
}

func (e *StoppedError) Error() string { return "level " + e.Name + ": stopped: " + e.Why }

// Wait waits for the command to exit, then tears the level down (Close).
// It returns the command's wait status; err says why cl-unshare stopped
// the level (a *StoppedError), if it did, and what went wrong tearing it
// down.
func (l *Level) Wait() (syscall.WaitStatus, error) {
	if l.remote != nil {
		return l.waitRemote()
	}
	ws := l.st.wait()
	e, stopped, code := l.ended(ws)
	if l.state != nil && l.state.Name != "" && l.runDir != "" {
		// For `cl-unshare events`, which learns the end from the record.
		l.state.Exit = &ExitStatus{Code: *e.ExitCode, How: e.How, Signal: e.Signal, OOMKills: e.OOMKills}
		if writeState(l.runDir, l.state) == nil && l.cgroups != nil {
			waitForReaders(readerLock(l.cgroups), readersGrace)
		}
	}
	err := l.Close()
	if rerr := l.report(e); err == nil {
		err = rerr
	}
	if stopped != "" {
		err = errors.Join(&StoppedError{l.Name, stopped, ws, code}, err)
	}
	return ws, err
}

// ended reads, before Close removes the cgroups, what the level used and
// how many of its processes the kernel OOM-killed, and makes the exit
// event: how CMD ended, and why cl-unshare stopped it, if it did.
func (l *Level) ended(ws syscall.WaitStatus) (e Event, stopped string, code int) {
	var spent *Spent
	ooms := 0
	if l.cgroups != nil {
		s := l.cgroups.Spent()
		spent, ooms = &s, l.cgroups.OOMKills()
	}
	l.mu.Lock()
	stopped, code = l.stopped, l.stoppedCode
	l.spent, l.oomKills = spent, ooms
	l.mu.Unlock()
	e = exitEvent(l.Name, ws)
	e.Usage, e.OOMKills = spent, ooms
	if ooms > 0 && ws.Signaled() && ws.Signal() == unix.SIGKILL {
		e.How = "oom-killed" // as systemd's Result: oom-kill
	}
	if code == timeoutCode || code == timeoutKilledCode {
		e.How, e.ExitCode = "timeout", &code
	}
	return e, stopped, code
}

// Spent is what a level used, as its command ended.
type Spent = cgroup.Spent

// OOMKills is how many processes of the level the kernel OOM-killed, as
// its command ended (0 before Wait returns).
func (l *Level) OOMKills() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.oomKills
}

// Spent returns what the level used, read from its outer cgroups when
// its command ended (nil before Wait returns).
func (l *Level) Spent() *Spent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.spent
}

// ExitCode maps a wait status the way shells do: the code, or 128+signal.
func ExitCode(ws syscall.WaitStatus) int { return exitcode.Of(ws) }

// ExitFailure is the exit code for a failure of cl-unshare's own.
const ExitFailure = exitcode.Failure

// ErrorCode is the exit code for an error of Start, ExecInPlace, Join or
// Wait: 127 when CMD was not found, 126 when it could not be executed,
// CMD's (or 128+signal) for a level cl-unshare stopped, 125 for any other
// failure (never one of CMD's own codes).
func ErrorCode(err error) int {
	var stopped *StoppedError
	if errors.As(err, &stopped) {
		if stopped.Code != 0 {
			return stopped.Code
		}
		return exitcode.Of(stopped.Status)
	}
	var re *remoteError
	if errors.As(err, &re) {
		return re.code
	}
	var se *StepError
	if errors.As(err, &se) && se.Step == nsexec.StepExec {
		return exitcode.Exec(err)
	}
	return exitcode.Failure
}

// Close kills whatever is left in the level and removes its cgroups in
// every hierarchy, its mirror mounts and its run directory. It is safe to
// call more than once.
func (l *Level) Close() error {
	if l.remote != nil {
		return l.closeRemote()
	}
	l.mu.Lock()
	closed := l.closed
	l.closed = true
	l.mu.Unlock()
	if closed {
		return nil
	}
	if l.done != nil {
		close(l.done)
	}
	if l.untimed != nil {
		close(l.untimed)
	}
	var errs []error
	if l.cgroups != nil {
		if err := l.cgroups.Kill(); err != nil {
			errs = append(errs, fmt.Errorf("kill level %s: %w", l.Name, err))
		}
	}
	if l.st != nil && l.st.cmd.ProcessState == nil {
		// Only on a failed start can the process be outside the cgroups.
		l.st.kill()
	}
	if l.mirror != nil {
		l.mirror.Close()
	}
	if l.prepared != nil {
		// After the kill: with --kill-child its exit signals CMD.
		l.prepared.release()
	}
	l.clones.close()
	l.template.Close()
	if l.st != nil {
		l.st.restore()
	}
	if l.watch != nil {
		// The level is going away with us: the watchdog has nothing to do.
		_ = l.watch.Process.Kill()
		_ = l.watch.Wait()
	}
	for i := len(l.undo) - 1; i >= 0; i-- {
		if err := l.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restoreForeground takes the terminal back from the command's process
// group, as a shell does when a job ends; SIGTTOU would stop us otherwise.
func restoreForeground() {
	signal.Ignore(unix.SIGTTOU)
	defer signal.Reset(unix.SIGTTOU)
	_ = unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
}
