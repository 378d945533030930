package nsexec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"github.com/cl-unshare/cl-unshare/internal/exitcode"
	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

func init() {
	// Namespaces are per thread: pin main to the main thread for the whole
	// init stage, so every unshare, mount and the final execve share it.
	if IsInit() {
		runtime.LockOSThread()
	}
}

// IsInit reports whether this process is the re-executed init stage.
func IsInit() bool { return len(os.Args) > 0 && os.Args[0] == Marker }

// Main runs the init stage. It never returns: it execs the command or exits.
func Main() {
	if len(os.Args) == 3 && os.Args[1] == InPlaceArg {
		mainInPlace()
	}
	sync := os.NewFile(SyncFD, "sync")
	syncFile = sync
	// ExtraFiles arrive without close-on-exec; the launcher learns that
	// execve succeeded from the EOF this flag produces.
	for _, fd := range []int{SyncFD, RunDirFD, MirrorFD, JoinPIDNSFD} {
		unix.CloseOnExec(fd)
	}
	var c *Config
	var err error
	hopped := len(os.Args) == 3 && (os.Args[1] == TimeHopArg || os.Args[1] == UserHopArg)
	if hopped {
		c, err = mainTimeHop()
	} else {
		c, err = readConfig(sync)
	}
	if err != nil {
		reportError(sync, StepConfig, err)
		os.Exit(exitcode.Failure)
	}
	if c.Mode == ModeJoin && c.JoinUser {
		reportError(sync, StepJoin, hopIntoUser(c))
		os.Exit(exitcode.Failure)
	}
	if c.Mode == ModeJoin && c.JoinTime {
		reportError(sync, StepJoin, hopIntoTime(c))
		os.Exit(exitcode.Failure)
	}
	var step string
	switch {
	case hopped && c.Mode != ModeJoin:
		// An init that re-executed itself into the level's time
		// namespace: the level is set up, CMD is all that is left.
	case c.Mode == ModeJoin:
		step, err = join(c)
	case c.Mode == ModeLevel, c.Mode == ModeUserLevel:
		var exe int
		if c.Init && c.Time {
			// Opened now: the new root may have no /proc to find it by.
			if exe, err = unix.Open("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0); err != nil {
				step = StepNamespaces
				break
			}
		}
		step, err = newLevel(c)
		if err == nil && c.Mode == ModeUserLevel {
			step, err = StepTerminal, noTerminalInjection()
		}
		if err == nil && c.Init && c.Time {
			step, err = StepNamespaces, reexecIntoTime(c, exe)
		}
	default:
		step, err = StepConfig, fmt.Errorf("unknown mode %q", c.Mode)
	}
	if err == nil && c.Init {
		// As execCommand does for CMD: the launcher's death takes the
		// level only with --kill-child.
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(c.KillSignal), 0, 0, 0)
		// What ps shows as its name, rather than "exe".
		name := []byte("cl-unshare-init\x00")
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
		runChild(c)
	}
	if err == nil {
		step, err = StepExec, execCommand(sync, c)
	}
	reportError(sync, step, err)
	os.Exit(exitcode.Failure)
}

// runChild runs CMD as a child, tells the launcher it runs, passes
// signals on and exits with CMD's status in the shell convention. It does
// all the waiting itself, for any child: as PID 1 of a level (--init) the
// orphans of the namespace are its children too, and reaping them is its
// job; entering a PID namespace (a join), the namespace takes only children
// forked from this locked thread.
func runChild(c *Config) {
	path, err := lookPath(c.Argv[0])
	if err != nil {
		reportError(syncFile, StepExec, err)
		os.Exit(exitcode.Failure)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	os.Unsetenv(failpoint.Env)
	attr := &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}}
	if pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && pgrp == unix.Getpgrp() {
		// We hold the terminal: CMD gets it, in a group of its own, so
		// Ctrl-C reaches it once, from the kernel, and not again from us.
		attr.Sys = &syscall.SysProcAttr{Setpgid: true, Foreground: true, Ctty: 0}
	}
	if c.SetUID != nil || c.SetGID != nil {
		// PID 1 keeps its ids, to reap and signal; CMD gets the new ones.
		cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), NoSetGroups: c.SetGID == nil || c.Mode == ModeUserLevel}
		if c.SetUID != nil {
			cred.Uid = uint32(*c.SetUID)
		}
		if c.SetGID != nil {
			cred.Gid = uint32(*c.SetGID)
		}
		if attr.Sys == nil {
			attr.Sys = &syscall.SysProcAttr{}
		}
		attr.Sys.Credential = cred
		if c.KeepCaps && c.SetUID != nil {
			if caps, err := capability.NewPid2(0); err == nil && caps.Load() == nil {
				for _, cp := range permitted(caps) {
					attr.Sys.AmbientCaps = append(attr.Sys.AmbientCaps, uintptr(cp))
				}
			}
		}
	}
	// Not exec.Cmd: its Wait would race the wait-for-any loop below.
	p, err := os.StartProcess(path, c.Argv, attr)
	if err != nil {
		reportError(syncFile, StepExec, fmt.Errorf("%s: %w", c.Argv[0], unwrap(err)))
		os.Exit(exitcode.Failure)
	}
	_ = send(syncFile, message{Type: "exec"})
	syncFile.Close()
	go func() {
		for s := range sigs {
			// Through a pidfd: once CMD is reaped, never its PID's next owner.
			_ = p.Signal(s)
		}
	}()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cl-unshare: wait for %s: %v\n", c.Argv[0], err)
			os.Exit(exitcode.Failure)
		}
		if pid != p.Pid || !(ws.Exited() || ws.Signaled()) {
			continue // an orphan reaped, or a stop
		}
		os.Exit(exitcode.Of(syscall.WaitStatus(ws)))
	}
}

// syncFile is the socket to the launcher, for requests mid-way.
var syncFile *os.File

// execCommand looks the command up first, so "not found" is a start error
// the launcher maps to 127, then tells the launcher and execs.
func execCommand(sync *os.File, c *Config) error {
	argv := c.Argv
	path, err := lookPath(argv[0])
	if err != nil {
		return err
	}
	if err := setIDs(c); err != nil {
		return err
	}
	if sync != nil {
		if err := send(sync, message{Type: "exec"}); err != nil {
			return err
		}
	}
	// The launcher's death must not take a running level with it, unless
	// --kill-child asked for just that. After setIDs: a change of ids
	// clears the parent-death signal.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(c.KillSignal), 0, 0, 0)
	if c.ReadyFD > 0 {
		unix.CloseOnExec(c.ReadyFD)
	}
	os.Unsetenv(failpoint.Env)
	err = unix.Exec(path, argv, os.Environ())
	return fmt.Errorf("%s: %w", argv[0], err)
}

// setIDs gives this process (every thread: Go's Setuid and Setgid do)
// the ids CMD runs as: supplementary groups dropped, then the group,
// then the user, which also leaves root's capabilities behind.
func setIDs(c *Config) error {
	if c.SetGID != nil {
		// A user namespace whose setgroups is "deny" keeps its groups.
		if err := unix.Setgroups(nil); err != nil && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(*c.SetGID); err != nil {
			return fmt.Errorf("setgid %d: %w", *c.SetGID, err)
		}
	}
	if c.SetUID != nil {
		if c.KeepCaps {
			// Per thread, as capabilities are: this one execs CMD.
			if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
				return fmt.Errorf("keep capabilities: %w", err)
			}
		}
		if err := syscall.Setuid(*c.SetUID); err != nil {
			return fmt.Errorf("setuid %d: %w", *c.SetUID, err)
		}
		if c.KeepCaps {
			return ambientCaps()
		}
	}
	return nil
}

// ambientCaps makes every capability this thread still permits ambient
// (and so inheritable and effective), which execve hands to a program
// that is not root, as unshare --keep-caps does.
func ambientCaps() error {
	caps, err := capability.NewPid2(0)
	if err == nil {
		err = caps.Load()
	}
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	for _, cp := range permitted(caps) {
		caps.Set(capability.EFFECTIVE|capability.INHERITABLE|capability.AMBIENT, cp)
	}
	if err := caps.Apply(capability.CAPS | capability.AMBS); err != nil {
		return fmt.Errorf("raise ambient capabilities: %w", err)
	}
	return nil
}

// permitted lists the capabilities caps permits.
func permitted(caps capability.Capabilities) []capability.Cap {
	var out []capability.Cap
	all, _ := capability.ListSupported()
	for _, cp := range all {
		if caps.Get(capability.PERMITTED, cp) {
			out = append(out, cp)
		}
	}
	return out
}

func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		st, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, unwrap(err))
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s: %w", name, unix.EACCES)
		}
		return name, nil
	}
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrNotFound) {
		return "", notFound(name)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, unwrap(err))
	}
	return p, nil
}

func unwrap(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// notFound is "executable file not found in $PATH", said once (not with
// ENOENT's own text after it), and still ENOENT for errors.Is and 127.
type notFound string

func (n notFound) Error() string { return string(n) + ": executable file not found in $PATH" }

func (n notFound) Unwrap() error { return unix.ENOENT }
