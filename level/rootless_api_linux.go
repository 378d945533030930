package level

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// A Go program that is not root starts a level as the command line
// does (StartRootless): it re-executes itself (it calls Init first, as
// any program using this package must) as the launcher, in a user and
// mount namespace of its own, which starts the level there with Start
// and reports on a pipe: once when CMD runs, once when it ended. The
// Level it returns acts on the level from outside, as cl-unshare's
// commands do: by CMD's PID, and by the level's cgroups, found as kill
// and freeze find them.

// apiEnv marks the re-executed launcher of a Go program, and names its
// config and report descriptors.
const apiEnv = "CL_UNSHARE_API_LAUNCHER"

// remote is a level a launcher in a user namespace runs for us.
type remote struct {
	pid    int           // CMD's
	pidfd  int           // CMD's, opened at once (-1: none), for Signal
	exited chan struct{} // closed once the launcher was waited for
	err    error         // the launcher's own failure, if any
	report *json.Decoder // its reports
	reader *os.File      // which they are read from
	once   sync.Once     // finish's: one reader of the last report
	end    apiReport
	endErr error
}

// finish reads the launcher's last report and waits for it to exit,
// once, for Wait and Close alike.
func (r *remote) finish() {
	r.once.Do(func() {
		r.endErr = r.report.Decode(&r.end)
		<-r.exited
		r.reader.Close()
	})
}

// apiReport is what the launcher says: first Pid (CMD runs) or Error
// (the start failed); then, at the end, Status and what Wait gave.
type apiReport struct {
	Pid      int              `json:"pid,omitempty"`
	Cgroups  map[string]Paths `json:"cgroups,omitempty"` // with Pid
	Error    string           `json:"error,omitempty"`
	Field    string           `json:"field,omitempty"` // Error's, for a *FieldError
	Code     int              `json:"code,omitempty"`  // ErrorCode of Error
	Ended    bool             `json:"ended,omitempty"`
	Status   int              `json:"status,omitempty"` // the wait status
	Stopped  string           `json:"stopped,omitempty"`
	StopCode int              `json:"stop_code,omitempty"`
	OOMKills int              `json:"oom_kills,omitempty"`
	Spent    *Spent           `json:"spent,omitempty"`
	WaitErr  string           `json:"wait_error,omitempty"`
}

// remoteError is an error of the launcher's Start, which ErrorCode
// maps as it did there.
type remoteError struct {
	msg  string
	code int
}

func (e *remoteError) Error() string { return e.msg }

// startRemote is Start for a caller who is not root.
func startRemote(cfg Config) (*Level, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(withoutFiles(cfg))
	if err != nil {
		return nil, fmt.Errorf("send the config to the launcher: %w", err)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgW.Close()
	repR, repW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return nil, err
	}
	// The ready and status descriptors keep their numbers in the launcher,
	// the pipes come after them.
	files := make([]*os.File, max(cfg.ReadyFD, cfg.StatusFD, 2)-2)
	for _, fd := range []int{cfg.ReadyFD, cfg.StatusFD} {
		if fd > 2 {
			// A copy: the launcher's once started, and closed here
			// then; the caller's own stays the caller's.
			dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
			if err != nil {
				for _, f := range append(files, cfgR, repR, repW) {
					if f != nil {
						f.Close()
					}
				}
				return nil, fmt.Errorf("pass fd %d to the launcher: %w", fd, err)
			}
			files[fd-3] = os.NewFile(uintptr(dup), "passed")
		}
	}
	files = append(files, cfgR, repW)
	env := []string{fmt.Sprintf("%s=%d:%d", apiEnv, 1+len(files), 2+len(files))}
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		repR.Close()
	}
	ln, err := newLauncher(cfg, "/proc/self/exe", []string{"cl-unshare-launcher"}, files, env)
	if err != nil {
		closeAll()
		return nil, err
	}
	ln.cmd.Stdin, ln.cmd.Stdout, ln.cmd.Stderr = orStd(cfg.Stdin, os.Stdin), orStd(cfg.Stdout, os.Stdout), orStd(cfg.Stderr, os.Stderr)
	r := &remote{exited: make(chan struct{}), reader: repR, report: json.NewDecoder(repR)}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that forked: it stays, waiting.
		runtime.LockOSThread()
		err := ln.start()
		started <- err
		if err != nil {
			close(r.exited)
			return
		}
		r.err = ln.cmd.Wait()
		close(r.exited)
	}()
	if err := <-started; err != nil {
		closeAll()
		return nil, err
	}
	// Our copies of its ends go: a launcher that dies reads as EOF.
	_, _ = cfgW.Write(b)
	cfgW.Close()
	var first apiReport
	if err := r.report.Decode(&first); err != nil || first.Error != "" || first.Pid == 0 {
		<-r.exited
		repR.Close()
		switch {
		case first.Error != "" && first.Field != "":
			return nil, &FieldError{first.Field, errors.New(first.Error)}
		case first.Error != "":
			return nil, &remoteError{first.Error, first.Code}
		}
		return nil, fmt.Errorf("rootless launcher: ended before the level ran (%v)", r.err)
	}
	r.pid, r.pidfd = first.Pid, -1
	if fd, err := unix.PidfdOpen(first.Pid, 0); err == nil {
		unix.CloseOnExec(fd)
		r.pidfd = fd
	}
	l := &Level{Name: cfg.Name, LevelDir: filepath.Join(cfg.RunDir, "levels", cfg.Name), runDir: cfg.RunDir, remote: r}
	// As the launcher made them: the level may be over and its cgroups
	// gone by now (a short CMD), and they are where it said.
	l.cgroups = &cgroup.Level{}
	for name, p := range first.Cgroups {
		var h cgroup.Hierarchy
		if name != "cgroup2" {
			h.ID, h.Controllers = 1, strings.Split(name, ",")
		}
		l.cgroups.Dirs = append(l.cgroups.Dirs, &cgroup.Dirs{Hierarchy: h, Parent: filepath.Dir(p.Outer), Outer: p.Outer, Inner: p.Inner, Leaf: p.Leaf})
	}
	return l, nil
}

// withoutFiles is cfg as the launcher gets it: its stdio is the
// launcher's own.
func withoutFiles(cfg Config) Config {
	cfg.Stdin, cfg.Stdout, cfg.Stderr = nil, nil, nil
	return cfg
}

// waitRemote is Wait for a level a launcher runs.
func (l *Level) waitRemote() (syscall.WaitStatus, error) {
	r := l.remote
	r.finish()
	l.endRemote()
	end := r.end
	if r.endErr != nil || !end.Ended {
		return 0, fmt.Errorf("level %s: its launcher ended without a word (%v)", l.Name, r.err)
	}
	ws := syscall.WaitStatus(end.Status)
	var err error
	if end.WaitErr != "" {
		err = errors.New(end.WaitErr)
	}
	if end.Stopped != "" {
		err = errors.Join(&StoppedError{l.Name, end.Stopped, ws, end.StopCode}, err)
	}
	return ws, err
}

// endRemote records, once the launcher is gone, what it said of the
// level's end, and ends what watched it.
func (l *Level) endRemote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.spent, l.oomKills = l.remote.end.Spent, l.remote.end.OOMKills
	if l.remote.pidfd >= 0 {
		unix.Close(l.remote.pidfd)
		l.remote.pidfd = -1
	}
	if l.done != nil {
		close(l.done)
	}
}

// signalRemote is Signal for a level a launcher runs: CMD is the
// launcher's child, so its PID is CMD's until the launcher reaps it;
// the pidfd holds it past that.
func (l *Level) signalRemote(sig syscall.Signal) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return os.ErrProcessDone
	}
	if l.remote.pidfd >= 0 {
		return unix.PidfdSendSignal(l.remote.pidfd, sig, nil, 0)
	}
	return unix.Kill(l.remote.pid, sig)
}

// closeRemote is Close for a level a launcher runs: it kills the level
// and waits until the launcher has torn it down.
func (l *Level) closeRemote() error {
	var err error
	select {
	case <-l.remote.exited:
	default:
		err = l.cgroups.Kill()
	}
	l.remote.finish()
	l.endRemote()
	if err != nil {
		return fmt.Errorf("kill level %s: %w", l.Name, err)
	}
	return nil
}

// isAPILauncher reports whether this process is a Go program's launcher.
func isAPILauncher() bool { return os.Getenv(apiEnv) != "" && rootless }

// apiLauncherMain starts the level it is sent, reports, waits, reports.
func apiLauncherMain() int {
	v := os.Getenv(apiEnv)
	os.Unsetenv(apiEnv)
	a, b, _ := strings.Cut(v, ":")
	cfgFD, err1 := strconv.Atoi(a)
	repFD, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		fmt.Fprintf(os.Stderr, "cl-unshare: rootless launcher: bad %s %q\n", apiEnv, v)
		return ExitFailure
	}
	unix.CloseOnExec(cfgFD)
	unix.CloseOnExec(repFD)
	in, out := os.NewFile(uintptr(cfgFD), "config"), os.NewFile(uintptr(repFD), "report")
	enc := json.NewEncoder(out)
	var cfg Config
	if err := json.NewDecoder(in).Decode(&cfg); err != nil {
		_ = enc.Encode(apiReport{Error: fmt.Sprintf("rootless launcher: read the config: %v", err), Code: ExitFailure})
		return ExitFailure
	}
	in.Close()
	l, err := Start(cfg)
	if err != nil {
		rep := apiReport{Error: err.Error(), Code: ErrorCode(err)}
		var fe *FieldError
		if errors.As(err, &fe) {
			rep.Field, rep.Error = fe.Field, fe.Err.Error()
		}
		_ = enc.Encode(rep)
		return ExitFailure
	}
	_ = enc.Encode(apiReport{Pid: l.Pid(), Cgroups: l.Cgroups()})
	ws, err := l.Wait()
	end := apiReport{Ended: true, Status: int(ws), OOMKills: l.OOMKills(), Spent: l.Spent()}
	if err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		var rest []string
		for _, e := range errs {
			var stopped *StoppedError
			if errors.As(e, &stopped) {
				end.Stopped, end.StopCode = stopped.Why, stopped.Code
			} else if e != nil {
				rest = append(rest, e.Error())
			}
		}
		end.WaitErr = strings.Join(rest, "; ")
	}
	_ = enc.Encode(end)
	return ExitCode(ws)
}
