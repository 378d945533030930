package level

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// A user who is not root starts a level in two steps. The launcher on
// the host (StartRootless) checks what it can, steps into a leaf of the
// cgroup it was delegated, and re-executes itself in a user namespace
// of its own (mapping the caller to root, as `unshare -r` does) with a
// mount namespace of its own: there it is root enough to make a level as
// root does, a --user level whose cgroups are in the delegated subtree.
// Its mounts reach no one else, so the host's RUN/levels/NAME holds
// links into its mount namespace through /proc/PID/root instead, which
// the caller may follow since that namespace is theirs.

// rootlessEnv marks the re-executed launcher; it is taken out of the
// environment at once, so nothing the level runs inherits it.
const rootlessEnv = "CL_UNSHARE_ROOTLESS"

// RunDirEnv, when set, replaces the default run directory: the rootless
// launcher sets it for its level, so that cl-unshare run inside (a
// nested level) finds the directory the level was given.
const RunDirEnv = "CL_UNSHARE_RUN_DIR"

// rootless is whether this process is the re-executed launcher of a user
// who is not root.
var rootless = func() bool {
	v := os.Getenv(rootlessEnv)
	os.Unsetenv(rootlessEnv)
	return v == "1"
}()

// NeedsRootless reports whether a level started by this process must go
// through StartRootless: its user is not root, on the host.
func NeedsRootless() bool {
	return os.Geteuid() != 0 && initialUserNS()
}

// CallerRunDir is the default run directory for whoever runs this:
// DefaultRunDir for root, else $XDG_RUNTIME_DIR/cl-unshare (then
// /run/user/UID/cl-unshare), or what RunDirEnv says.
func CallerRunDir() string {
	if d := os.Getenv(RunDirEnv); filepath.IsAbs(d) {
		return filepath.Clean(d)
	}
	if os.Geteuid() == 0 {
		return DefaultRunDir
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "cl-unshare")
	}
	return fmt.Sprintf("/run/user/%d/cl-unshare", os.Geteuid())
}

// StartRootless starts the level cfg describes for a user who is not
// root, with args (cl-unshare's own command line) run again in a user
// and mount namespace of the launcher's own, and returns its exit code.
// It fails, with what to do, where this host does not let a user have a
// level.
func StartRootless(cfg Config, args []string) (int, error) {
	if err := delegatedToCaller(); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return 0, fmt.Errorf("run directory: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find cl-unshare itself: %w", err)
	}
	cmd := exec.Command(self, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), rootlessEnv+"=1", RunDirEnv+"="+cfg.RunDir)
	cmd.ExtraFiles = inheritable()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		// With no right to setgroups(2) on the host, the kernel takes a
		// gid map from us only once setgroups is denied in it.
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  unix.SIGKILL,
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, userNSError(err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("rootless launcher: %w", err)
	}
	return 0, nil
}

// inheritable are this process's open descriptors above stderr that an
// exec would pass on (not close-on-exec), each at its own number: the
// readiness and status descriptors a caller handed us, say. A nil entry
// is a number that stays closed.
func inheritable() []*os.File {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	top := 2
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
				top = max(top, fd)
			}
		}
	}
	var out []*os.File
	for fd := 3; fd <= top; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			out = append(out, nil)
			continue
		}
		out = append(out, os.NewFile(uintptr(fd), "inherited"))
	}
	return out
}

// userNSError says why a user who is not root got no user namespace.
func userNSError(err error) error {
	for _, s := range []struct{ file, bad, say string }{
		{"/proc/sys/kernel/unprivileged_userns_clone", "0", "sysctl kernel.unprivileged_userns_clone is 0: unprivileged user namespaces are disabled (set it to 1, or run as root)"},
		{"/proc/sys/user/max_user_namespaces", "0", "sysctl user.max_user_namespaces is 0: user namespaces are disabled (raise it, or run as root)"},
		{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1", "sysctl kernel.apparmor_restrict_unprivileged_userns is 1: AppArmor denies unprivileged user namespaces (give cl-unshare an AppArmor profile with userns, or run as root)"},
	} {
		if b, rerr := os.ReadFile(s.file); rerr == nil && strings.TrimSpace(string(b)) == s.bad {
			return fmt.Errorf("user namespace: %w: %s", err, s.say)
		}
	}
	return fmt.Errorf("user namespace: %w (a user who is not root needs one for a level)", err)
}

// delegateHint says how a user gets a delegated cgroup on a systemd
// host. (The options are systemd-run's, not ours: a raw string.)
const delegateHint = `run it under systemd-run --user --scope -p Delegate=yes, or in a unit with Delegate=yes`

// joinHint says how a user runs exec from inside their delegated
// subtree (systemd's user manager owns it).
const joinHint = `run it as systemd-run --user --scope cl-unshare exec ..., or from a process in that subtree`

// delegatedToCaller checks that the caller's cgroup2 cgroup is theirs to
// make levels in, and readies it: a launcher alone in it steps into a
// leaf of it so that it may hand its controllers down.
func delegatedToCaller() error {
	infos, err := mounts.Current()
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return err
	}
	hs, err := cgroup.Discover(f, infos)
	f.Close()
	if err != nil {
		return fmt.Errorf("find cgroups: %w", err)
	}
	for _, h := range hs {
		if !h.V2() {
			continue
		}
		dir := h.Dir(h.Path)
		if !cgroup.OwnedBy(dir, os.Geteuid()) && !cgroup.Delegated(dir) {
			return fmt.Errorf("no cgroup is delegated to you: your cgroup %s is not yours to make cgroups in; %s", dir, delegateHint)
		}
		if _, err := cgroup.EnterDelegatedLeaf(h, os.Getpid()); err != nil {
			return err
		}
		return nil
	}
	return errors.New("this host has no cgroup v2 hierarchy, and a user who is not root may not make cgroups in v1 ones; run it as root, or on a host with cgroup v2")
}

// leaveOut drops from hs the v1 hierarchies this process may not make
// cgroups in: a rootless launcher's, or a level's in a user namespace
// that was given no v1 cgroup of its own. cgroup2 is always kept.
func leaveOut(hs []cgroup.Hierarchy) (kept []cgroup.Hierarchy, out []string) {
	if initialUserNS() && os.Geteuid() == 0 {
		return hs, nil
	}
	for _, h := range hs {
		// A rootless level does without v1 whatever it may write: the
		// level could not mount a v1 hierarchy in its user namespace.
		if h.V2() || !rootless && unix.Access(h.Dir(cgroup.Base(h)), unix.W_OK) == nil {
			kept = append(kept, h)
			continue
		}
		out = append(out, h.Name())
	}
	return kept, out
}

// withoutV1 is layout without the v1 hierarchies named in out; a hybrid
// layout left with cgroup2 alone becomes unified, as the level then has
// nothing else.
func withoutV1(layout mounts.Layout, out []string) mounts.Layout {
	if len(out) == 0 {
		return layout
	}
	gone := map[string]bool{}
	for _, n := range out {
		gone[n] = true
	}
	var fs []mounts.FS
	v1 := 0
	for _, f := range layout.FS {
		if f.Type == "cgroup" {
			if gone[v1Name(f.Data)] {
				continue
			}
			v1++
		}
		fs = append(fs, f)
	}
	if v1 == 0 {
		for _, f := range fs {
			if f.Type == "cgroup2" {
				return mounts.Layout{Kind: mounts.Unified, FS: []mounts.FS{{Type: "cgroup2"}}}
			}
		}
	}
	layout.FS = fs
	var links []mounts.Symlink
	for _, s := range layout.Symlinks {
		if !gone[s.Target] {
			links = append(links, s)
		}
	}
	layout.Symlinks = links
	return layout
}

// v1Name is a v1 hierarchy's name as Hierarchy.Name gives it, from its
// mount options.
func v1Name(data string) string {
	return strings.Join(mounts.Controllers(data), ",")
}

// linkMirror makes the host-visible RUN/levels/NAME of a rootless level:
// links, in the directory the launcher's mount namespace covers with
// the level's, to that mount's cgroup mirror and nested levels through
// /proc/PID/root. Undone by unlinkMirror.
func linkMirror(levelDir string) error {
	for _, name := range []string{"cgroup", "levels"} {
		target := "/proc/" + strconv.Itoa(os.Getpid()) + "/root" + filepath.Join(levelDir, name)
		if err := os.Symlink(target, filepath.Join(levelDir, name)); err != nil {
			return fmt.Errorf("run directory: link the mirror for the host: %w", err)
		}
	}
	return nil
}

// unlinkMirror removes what linkMirror made, and only links.
func unlinkMirror(levelDir string) error {
	for _, name := range []string{"cgroup", "levels"} {
		p := filepath.Join(levelDir, name)
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove %s: %w", p, err)
			}
		}
	}
	return nil
}

// errAPIRootless is Start's answer to a caller who is not root: the
// rootless launcher is the command line run again, which a program
// using this package is not.
var errAPIRootless = errors.New("a user who is not root starts levels with the cl-unshare command, which runs itself again in a user namespace of its own; from Go, run it with os/exec")

// rootlessDefaults makes the level of a rootless launcher a --user level
// (it is one whatever it asks: its root is the caller), whose root is
// the launcher's own root, the caller, unless it maps ids of its own.
func rootlessDefaults(cfg *Config) {
	if !rootless {
		return
	}
	cfg.User = true
	if cfg.UIDMap.Count == 0 {
		cfg.UIDMap = IDMap{Inner: 0, Outer: 0, Count: 1}
	}
	if cfg.GIDMap.Count == 0 {
		cfg.GIDMap = IDMap{Inner: 0, Outer: 0, Count: 1}
	}
}
