package nsexec

import (
	"errors"
	"fmt"
	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/cl-unshare/cl-unshare/internal/exitcode"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/capability"
	"github.com/moby/sys/mountinfo"
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
	if len(os.Args) == 4 && os.Args[1] == InPlaceArg {
		mainInPlace()
	}
	sync := os.NewFile(SyncFD, "sync")
	syncFile = sync
	// ExtraFiles arrive without close-on-exec; the launcher learns that
	// execve succeeded from the EOF this flag produces.
	unix.CloseOnExec(SyncFD)
	unix.CloseOnExec(LevelFD)
	unix.CloseOnExec(MountNSFD)
	c, err := readConfig(sync)
	if err != nil {
		reportError(sync, StepConfig, err)
		os.Exit(exitcode.Failure)
	}
	run := run
	if c.Join {
		run = join
	}
	step, err := run(c)
	if err == nil && c.UserNS {
		step, err = StepTerminal, noTerminalInjection()
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

func run(c *Config) (string, error) {
	steps := []struct {
		name string
		do   func(*Config) error
	}{
		{StepMountNS, func(c *Config) error {
			if !c.UserNS {
				return nil // cloned with CLONE_NEWNS
			}
			return userMountNS(c)
		}},
		{StepCgroupNS, unshareCgroupNS},
		{StepPropagation, func(c *Config) error {
			if c.UserNS {
				return propagationUserNS(c.RunDir)
			}
			// First: as peers of the host's mounts, the unmounts below
			// would reach the host.
			return mounts.SlaveAll()
		}},
		// With a user namespace the launcher did these before the
		// namespace existed (PrepareMounts), where they can be undone.
		{StepHide, skipIfUserNS(hide)},
		{StepMirror, skipIfUserNS(mirror)},
		{StepRunDir, skipIfUserNS(func(c *Config) error { return mounts.Move(c.LevelDir, c.RunDir) })},
		{StepCgroupMount, cgroupMounts},
		{StepLeaf, leaf},
		{StepProc, func(c *Config) error {
			if !c.MountProc || c.UserNS {
				return nil // with a user namespace it came with the mount namespace
			}
			return unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}},
	}
	for _, s := range steps {
		if os.Getenv(failpoint.Env) == "crash:"+s.name {
			// Die without a word, as a crash would, to test the launcher.
			unix.Kill(os.Getpid(), unix.SIGKILL)
		}
		if err := failpoint.At(s.name); err != nil {
			return s.name, err
		}
		if err := s.do(c); err != nil {
			return s.name, err
		}
	}
	// A step of our own just before exec, which 126/127 never cover.
	return "before exec", failpoint.At("before exec")
}

// join enters a running level's cgroup and mount namespaces, as nsenter
// does. setns(CLONE_NEWNS) refuses a thread that shares its filesystem
// attributes, as every Go thread does, until unshare(CLONE_FS).
func join(c *Config) (string, error) {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return StepJoin, fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	if err := unix.Setns(CgroupNSFD, unix.CLONE_NEWCGROUP); err != nil {
		return StepJoin, fmt.Errorf("setns cgroup namespace: %w", err)
	}
	if err := unix.Setns(MountNSFD, unix.CLONE_NEWNS); err != nil {
		return StepJoin, fmt.Errorf("setns mount namespace: %w", err)
	}
	unix.Close(CgroupNSFD)
	unix.Close(MountNSFD)
	if c.JoinPID {
		if err := unix.Setns(PIDNSFD, unix.CLONE_NEWPID); err != nil {
			return StepJoin, fmt.Errorf("setns pid namespace: %w", err)
		}
		unix.Close(PIDNSFD)
	}
	if c.As != nil {
		if err := dropTo(*c.As); err != nil {
			return StepJoin, err
		}
		if err := noTerminalInjection(); err != nil {
			return StepTerminal, err
		}
		// Files the caller of exec left open (a log, a unit's socket)
		// are not for code the level planted.
		if err := closeInherited(); err != nil {
			return StepJoin, err
		}
	}
	// After the drop: CMD must not start in a directory it could not enter.
	if err := unix.Chdir(c.Dir); err != nil {
		_ = unix.Chdir("/")
	}
	if c.JoinPID {
		runChild(c)
	}
	return "before exec", failpoint.At("before exec")
}

// dropTo leaves this process nothing of host root's: ids.UID and
// ids.GID on every thread, no supplementary groups, and on this thread
// (the one that execs or forks CMD; capabilities are per thread) no
// capability in any set, an empty bounding set and no_new_privs, so no
// setuid binary the level's mounts offer can bring any of it back. The
// explicit clearing also covers a level whose root is host uid 0 (-r).
func dropTo(ids HostIDs) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// This thread's sets (capabilities are per thread).
	caps, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	// The bounding set needs CAP_SETPCAP: emptied while we are root.
	caps.Clear(capability.BOUNDS | capability.AMBS)
	if err := caps.Apply(capability.BOUNDS | capability.AMBS); err != nil {
		return fmt.Errorf("empty the bounding and ambient capability sets: %w", err)
	}
	// The syscall package's versions change every thread, not just this.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(ids.GID, ids.GID, ids.GID); err != nil {
		return fmt.Errorf("setresgid %d: %w", ids.GID, err)
	}
	if err := syscall.Setresuid(ids.UID, ids.UID, ids.UID); err != nil {
		return fmt.Errorf("setresuid %d: %w", ids.UID, err)
	}
	caps.Clear(capability.CAPS)
	if err := caps.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}

// closeInherited marks every descriptor above stderr close-on-exec: CMD
// gets stdin, stdout and stderr only.
func closeInherited() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	ents, err := os.ReadDir("/proc/self/fd") // before Linux 5.11
	if err != nil {
		return fmt.Errorf("list open files: %w", err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// runChild runs CMD as a child, tells the launcher it runs, passes
// signals on and exits with CMD's status in the shell convention. It does
// all the waiting itself, for any child: as PID 1 of a level (--init) the
// orphans of the namespace are its children too, and reaping them is its
// job; entering a PID namespace (exec), the namespace takes only children
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

func unshareCgroupNS(*Config) error {
	// The launcher put us in the level's cgroups in every hierarchy, so the
	// new namespace is rooted at the inner cgroup everywhere.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWCGROUP): %w", err)
	}
	return nil
}

// mirror puts the level's mirror at /sys/fs/cgroup and its run directory
// back in the host's peer groups, after SlaveAll made every mount a
// slave (host mounts still arrive, nothing made here leaks out). The two
// peer groups are the ways out: the mirror's, for the cgroup filesystems
// built on it, and the run directory's, for nested levels' run
// directories. The mirror must move before the run directory rejoins:
// the kernel moves no mount out of a shared one.
func mirror(c *Config) error {
	defer unix.Close(LevelFD)
	own := filepath.Join(c.LevelDir, "cgroup")
	host, err := unix.Openat(LevelFD, "cgroup", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the host's mirror: %w", err)
	}
	defer unix.Close(host)
	for _, step := range []func() error{
		func() error { return mounts.MakePrivate(c.LevelDir) },
		func() error { return mounts.MakePrivate(own) },
		func() error { return setGroup(host, own) },
		func() error { return mounts.Move(own, mounts.CgroupRoot) },
		func() error { return setGroup(LevelFD, c.LevelDir) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func setGroup(fd int, dir string) error {
	err := mounts.JoinGroup(fd, dir)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("%w (MOVE_MOUNT_SET_GROUP needs Linux 5.15 or later)", err)
	}
	return err
}

func skipIfUserNS(do func(*Config) error) func(*Config) error {
	return func(c *Config) error {
		if c.UserNS {
			return nil
		}
		return do(c)
	}
}

// PrepareMounts readies the calling thread's own mount namespace (made by
// unshare(CLONE_FS|CLONE_NEWNS), still owned by the host's user namespace)
// for a level with a user namespace to be cloned from: no host cgroupfs,
// no other level's run directory, the level's run directory at RUN. A
// mount namespace copied into a new user namespace has every mount locked
// together, so what is removed here can never be brought back from inside,
// while a mount the level itself covered could be unmounted to show the
// host's whole cgroup tree. A failure is a *StepError.
func PrepareMounts(c *Config) error {
	steps := []struct {
		name string
		do   func() error
	}{
		// First: as peers of the host's mounts, the unmounts below would
		// reach the host.
		{StepPropagation, mounts.SlaveAll},
		{StepHide, func() error { return hide(c) }},
		{StepMirror, func() error {
			// The level's /sys/fs/cgroup starts as this copy of its
			// mirror, locked; what it mounts there reaches this one.
			own := filepath.Join(c.LevelDir, "cgroup")
			if err := mounts.MakePrivate(c.LevelDir); err != nil {
				return err
			}
			if err := mounts.MakePrivate(own); err != nil {
				return err
			}
			return mounts.Move(own, mounts.CgroupRoot)
		}},
		{StepRunDir, func() error {
			if err := mounts.Move(c.LevelDir, c.RunDir); err != nil {
				return err
			}
			// The level's bind of it joins a peer group with this copy
			// (mirror.Keeper.Join); the level's own copy, locked under
			// that bind, need not get every mount twice.
			return mounts.MakePrivate(c.RunDir)
		}},
	}
	for _, s := range steps {
		err := failpoint.At(s.name)
		if err == nil {
			err = s.do()
		}
		if err != nil {
			return newStepError(s.name, err)
		}
	}
	return nil
}

// syncFile is the socket to the launcher, for requests mid-way.
var syncFile *os.File

// propagationUserNS: the run directory, already at RUN, and the mirror,
// at /sys/fs/cgroup (PrepareMounts), are locked here; a bind of each onto
// itself is ours to change. Made private, the launcher (which holds
// CAP_SYS_ADMIN over both namespaces) joins them to peer groups of its
// own through /proc/PID/root with MOVE_MOUNT_SET_GROUP.
func propagationUserNS(runDir string) error {
	unix.Close(LevelFD)
	for _, dir := range []string{runDir, mounts.CgroupRoot} {
		if err := mounts.BindTree(dir, dir); err != nil {
			return err
		}
		if err := mounts.MakePrivate(dir); err != nil {
			return err
		}
	}
	return ask(syncFile, message{Type: "set-group"}, -1)
}

// userMountNS makes the mount namespace of a level with a user namespace:
// a copy of the launcher's prepared one (PrepareMounts), taken from inside
// the level's user namespace, so the kernel locks every mount it copies
// and the level can unmount none of them to see what they cover. With
// --mount-proc the level's /proc goes into the launcher's namespace first,
// to be copied locked too: the host's /proc under it stays out of reach.
func userMountNS(c *Config) error {
	if c.MountProc {
		fd, err := procMount()
		if err != nil {
			return fmt.Errorf("mount /proc: %w", err)
		}
		err = ask(syncFile, message{Type: "proc"}, fd)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	return nil
}

// procMount returns a detached mount of a new /proc of this process's PID
// namespace. fsopen needs CAP_SYS_ADMIN over the caller's mount namespace,
// which is still the launcher's here: a thread of ours makes one of its
// own first, and ends with it.
func procMount() (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with us
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			done <- result{-1, fmt.Errorf("unshare(CLONE_NEWNS): %w", err)}
			return
		}
		fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
		if err != nil {
			done <- result{-1, fmt.Errorf("fsopen proc: %w", err)}
			return
		}
		defer unix.Close(fs)
		_ = unix.FsconfigSetString(fs, "source", "proc")
		if err := unix.FsconfigCreate(fs); err != nil {
			done <- result{-1, fmt.Errorf("create proc: %w", err)}
			return
		}
		fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
		if err != nil {
			err = fmt.Errorf("fsmount proc: %w", err)
		}
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// hide detaches every cgroup filesystem inherited from the host (they
// show its whole tree) and everything under the run directory other than
// this level's own (siblings, and a parent level's mirror).
func hide(c *Config) error {
	infos, err := mounts.Current()
	if err != nil {
		return err
	}
	return mounts.DetachMatching(infos, func(m *mountinfo.Info) bool {
		if mounts.Under(m.Mountpoint, c.LevelDir) {
			return false
		}
		return m.FSType == "cgroup" || m.FSType == "cgroup2" ||
			m.Mountpoint == mounts.CgroupRoot ||
			(mounts.Under(m.Mountpoint, c.RunDir) && m.Mountpoint != c.RunDir)
	})
}

// cgroupMounts builds the host's layout at /sys/fs/cgroup, the level's
// copy of its mirror: each mount propagates to the host's (or, with a
// user namespace, the launcher's) and is mounted once here.
func cgroupMounts(c *Config) error {
	return mounts.Build(c.Layout, mounts.CgroupRoot)
}

// leaf moves this process from the level's cgroup2 namespace root to its
// leaf, and then lets the root hand every controller it has down to its
// children, as a host's root does: the no-internal-process rule forbids
// both while a process is in the root.
func leaf(c *Config) error {
	if c.Leaf == "" {
		return nil
	}
	for _, fs := range c.Layout.FS {
		if fs.Type != "cgroup2" {
			continue
		}
		root := filepath.Join(mounts.CgroupRoot, fs.Dir)
		if err := cgroup.WriteFile(filepath.Join(root, c.Leaf), "cgroup.procs", "0"); err != nil {
			return err
		}
		return cgroup.EnableAll(root)
	}
	return nil
}

// execCommand looks the command up first, so "not found" is a start error
// the launcher maps to 127, then tells the launcher and execs.
func execCommand(sync *os.File, c *Config) error {
	argv := c.Argv
	path, err := lookPath(argv[0])
	if err != nil {
		return err
	}
	if sync != nil {
		if err := send(sync, message{Type: "exec"}); err != nil {
			return err
		}
	}
	// The launcher's death must not take a running level with it, unless
	// --kill-child asked for just that.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(c.KillSignal), 0, 0, 0)
	if c.ReadyFD > 0 {
		unix.CloseOnExec(c.ReadyFD)
	}
	os.Unsetenv(failpoint.Env)
	err = unix.Exec(path, argv, os.Environ())
	return fmt.Errorf("%s: %w", argv[0], err)
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
