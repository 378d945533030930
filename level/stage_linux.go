package level

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"github.com/cl-unshare/cl-unshare/internal/pty"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"golang.org/x/sys/unix"
)

// reexec is this binary run again in role (its argv[0], the dispatch key
// Init reads): a level's init stage (started, or exec'd in place by
// --exec), its watchdog.
func reexec(role string, args ...string) *exec.Cmd {
	return &exec.Cmd{Path: "/proc/self/exe", Args: append([]string{role}, args...)}
}

// stage is an init stage on its way to its command: the re-executed
// cl-unshare (package nsexec), and our end of its socket.
type stage struct {
	cmd   *exec.Cmd
	sock  *os.File
	fg    bool       // it was given the caller's terminal's foreground
	relay *pty.Relay // or a terminal of its own
}

// stageSpec says how to start one. Every start of a process in a level
// (a new level, a join of a running one) goes through startStage.
type stageSpec struct {
	stdio  []*os.File           // stdin, stdout, stderr
	files  []*os.File           // its descriptors from 4 on
	cgroup string               // the cgroup2 directory it starts in, if any
	attr   *syscall.SysProcAttr // namespaces and ids; the terminal is added
	ownTTY bool                 // a pty of its own, not the caller's terminal
	// run calls start where it must run: on the thread whose death
	// Pdeathsig watches, in the namespaces it must be cloned from.
	run func(start func() error) error
}

// startStage starts the init stage, stopped before its first step until
// release sends its config.
func startStage(s stageSpec) (*stage, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	st := &stage{sock: os.NewFile(uintptr(pair[0]), "sync")}
	child := os.NewFile(uintptr(pair[1]), "sync-child")
	defer child.Close() // after the start, the stage's alone
	if err := st.terminal(&s); err != nil {
		st.sock.Close()
		return nil, err
	}
	if s.cgroup != "" {
		fd, err := unix.Open(s.cgroup, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			st.abort()
			return nil, fmt.Errorf("open cgroup %s: %w", s.cgroup, err)
		}
		defer unix.Close(fd)
		s.attr.UseCgroupFD, s.attr.CgroupFD = true, fd
	}
	st.cmd = reexec(nsexec.Marker)
	st.cmd.Stdin, st.cmd.Stdout, st.cmd.Stderr = s.stdio[0], s.stdio[1], s.stdio[2]
	st.cmd.ExtraFiles = append([]*os.File{child}, s.files...)
	st.cmd.SysProcAttr = s.attr
	err = s.run(func() error {
		err := failpoint.At("spawn")
		if err == nil {
			err = st.cmd.Start()
		}
		if err != nil {
			return &spawnError{err}
		}
		return nil
	})
	if st.relay != nil {
		st.relay.Slave.Close() // CMD's now
	}
	if err != nil && st.cmd.Process == nil {
		st.abort()
		return nil, err
	}
	if err != nil {
		st.sock.Close() // never released: the caller's Close kills it
	} else if st.relay != nil {
		st.relay.Start()
	}
	return st, err // started, even if what run did after failed
}

// spawnError is the fork and exec of the stage failing, as against what
// run does around it: each caller says it in its own words.
type spawnError struct{ err error }

func (e *spawnError) Error() string { return e.err.Error() }
func (e *spawnError) Unwrap() error { return e.err }

// terminal gives the stage the caller's terminal's foreground, so Ctrl-C
// reaches its command once, from the kernel, and not again from us; or,
// with ownTTY, a pty of its own in a session of its own: code a level
// planted gets no hold on the caller's terminal (it could keep reading
// it, or take its foreground, after the command returned).
func (st *stage) terminal(s *stageSpec) error {
	if s.ownTTY {
		for i, f := range s.stdio {
			if !pty.IsTerminal(f) {
				continue
			}
			if st.relay == nil {
				r, err := pty.Open(f)
				if err != nil {
					return fmt.Errorf("a terminal of its own: %w", err)
				}
				st.relay = r
				s.attr.Setsid, s.attr.Setctty, s.attr.Ctty = true, true, i
			}
			s.stdio[i] = st.relay.Slave
		}
		if st.relay != nil {
			return nil
		}
	}
	s.attr.Setpgid = true
	if isForeground(s.stdio[0]) {
		st.fg = true
		s.attr.Foreground, s.attr.Ctty = true, int(s.stdio[0].Fd())
	}
	return nil
}

// release places the started stage with join (its cgroups), sends it its
// config and waits, answering its requests, until it has exec'd its
// command (nil) or failed (a *StepError, or ErrDied with its status).
func (st *stage) release(c *nsexec.Config, join func(pid int) error, req nsexec.Requests) error {
	defer st.sock.Close()
	if err := join(st.cmd.Process.Pid); err != nil {
		return err
	}
	if err := failpoint.At("release"); err != nil {
		return err
	}
	err := nsexec.SendConfig(st.sock, c)
	if err == nil {
		err = nsexec.WaitWith(st.sock, req)
	}
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		err = nsexec.ErrDied // killed under us: a kill of the level, say
	}
	if errors.Is(err, nsexec.ErrDied) {
		// Its end of the socket is closed: it is gone or going.
		st.wait()
		return fmt.Errorf("%w: %v", err, st.cmd.ProcessState)
	}
	return err
}

// wait waits for the stage, or the command it became.
func (st *stage) wait() syscall.WaitStatus {
	_ = st.cmd.Wait()
	ws, _ := st.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws
}

// restore gives the caller's terminal back once the command and what it
// left are gone, as a shell does when a job ends.
func (st *stage) restore() {
	if st.fg {
		restoreForeground()
	}
	if st.relay != nil {
		st.relay.Close()
	}
}

// kill ends a stage that failed after it started.
func (st *stage) kill() {
	_ = st.cmd.Process.Kill()
	st.wait()
}

// abort undoes what startStage set up before the stage started.
func (st *stage) abort() {
	st.sock.Close()
	if st.relay != nil {
		st.relay.Close()
	}
}

func orStd(f, std *os.File) *os.File {
	if f != nil {
		return f
	}
	return std
}

func isForeground(f *os.File) bool {
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}
