package level

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/user"
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
	if fd, ok := strings.CutPrefix(v, "wait:"); ok {
		// Its ids are mapped by newuidmap once it runs: nothing here may
		// use them before the launcher on the host says so, closing fd.
		n, _ := strconv.Atoi(fd)
		var b [1]byte
		_, _ = unix.Read(n, b[:])
		unix.Close(n)
		// It was executed unmapped, which left it no capability in its
		// namespace: executed again as the root it now is, it has them.
		env := append(os.Environ(), rootlessEnv+"=again:"+strconv.Itoa(os.Getppid()))
		err := unix.Exec("/proc/self/exe", os.Args, env)
		fmt.Fprintf(os.Stderr, "cl-unshare: rootless launcher: execute itself again: %v\n", err)
		os.Exit(ExitFailure)
	}
	if ppid, ok := strings.CutPrefix(v, "again:"); ok {
		// Gaining those capabilities cleared its parent-death signal
		// (commit_creds does, for any rise): set again, then checked
		// against a launcher on the host that died before it was.
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
		if strconv.Itoa(os.Getppid()) != ppid {
			os.Exit(ExitFailure)
		}
		return true
	}
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
	// Only where a rootless launcher set it (in its user namespace, or a
	// user's): host root's default is not an environment's to move.
	if d := os.Getenv(RunDirEnv); filepath.IsAbs(d) && (os.Geteuid() != 0 || !initialUserNS()) {
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
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find cl-unshare itself: %w", err)
	}
	ln, err := newLauncher(cfg, self, args, inheritable(), nil)
	if err != nil {
		return 0, err
	}
	ln.cmd.Stdin, ln.cmd.Stdout, ln.cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	defer signal.Stop(sigs)
	if err := ln.start(); err != nil {
		return 0, err
	}
	go func() {
		for s := range sigs {
			if (s == unix.SIGINT || s == unix.SIGQUIT) && inForeground() {
				continue
			}
			_ = ln.cmd.Process.Signal(s)
		}
	}()
	err = ln.cmd.Wait()
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

// launcher is the re-executed launcher of a user who is not root, made
// ready by newLauncher and started by start.
type launcher struct {
	cmd     *exec.Cmd
	passed  []*os.File // the caller's, closed here once the launcher has them
	release *os.File   // closed once newuidmap mapped its namespace
	wait    *os.File
}

// newLauncher checks what it can of a level cfg describes for a user
// who is not root, readies their delegated cgroup, and makes the command
// that runs path with args in a user and mount namespace of its own:
// files as its descriptors 3 and on (nil: closed), env added to ours.
func newLauncher(cfg Config, path string, args []string, files []*os.File, env []string) (*launcher, error) {
	if err := delegatedToCaller(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	useRanges, uid, gid, err := rootlessMaps(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args[1:]...)
	cmd.Args[0] = args[0]
	maps := fmt.Sprintf("%s=%d:%d:%d/%d:%d:%d", mapsEnv, uid.Inner, uid.Outer, uid.Count, gid.Inner, gid.Outer, gid.Count)
	cmd.Env = append(append(os.Environ(), env...), RunDirEnv+"="+cfg.RunDir, maps)
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		// With no right to setgroups(2) on the host, the kernel takes a
		// gid map from us only once setgroups is denied in it.
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  unix.SIGKILL,
	}
	ln := &launcher{cmd: cmd, passed: files}
	if !useRanges {
		cmd.Env = append(cmd.Env, rootlessEnv+"=1")
		return ln, nil
	}
	// newuidmap writes the maps, once the child exists: it waits.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ln.wait, ln.release = r, w
	cmd.ExtraFiles = append(append([]*os.File(nil), files...), r)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=wait:%d", rootlessEnv, 2+len(cmd.ExtraFiles)))
	cmd.SysProcAttr.UidMappings, cmd.SysProcAttr.GidMappings = nil, nil
	return ln, nil
}

// start starts the launcher and, with ranges, maps its namespace.
func (ln *launcher) start() error {
	defer func() {
		if ln.wait != nil {
			ln.wait.Close()
			ln.release.Close()
		}
	}()
	if err := ln.cmd.Start(); err != nil {
		return userNSError(err)
	}
	// The caller's descriptors are the launcher's now: a ready fd held
	// open here would never tell the caller the level is ready.
	for _, f := range ln.passed {
		if f != nil {
			f.Close()
		}
	}
	if ln.release != nil {
		if err := mapRanges(ln.cmd.Process.Pid); err != nil {
			_ = ln.cmd.Process.Kill()
			_ = ln.cmd.Wait()
			return fmt.Errorf("map your subordinate ids: %w", err)
		}
	}
	return nil
}

// inForeground reports whether this process's group is the foreground
// one of its terminal. A SIGINT or SIGQUIT it gets then most likely came
// from the terminal, which sent it to the whole group, the launcher in
// the namespace too: passed on, it would arrive twice. One from kill(1),
// or with no terminal, is passed on.
func inForeground() bool {
	// Its controlling terminal, whatever its stdio is (a log, /dev/null).
	fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // none
	}
	defer unix.Close(fd)
	pg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	return err == nil && pg == unix.Getpgrp()
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

// rootlessRunDir is where a caller who is not root finds the run
// directory of top-level level dir, whose record names sup as its
// supervisor: in that launcher's mount namespace, where the links
// linkMirror made lead (the same directory, mounted there), else dir
// itself. A link to any other process (its PID reused by another of the
// user's, once the launcher died) leads nowhere of the level's.
func rootlessRunDir(dir string, sup Proc) string {
	if !NeedsRootless() {
		return dir
	}
	target, err := os.Readlink(filepath.Join(dir, "levels"))
	if err != nil {
		return dir
	}
	pid, rest, ok := strings.Cut(strings.TrimPrefix(target, "/proc/"), "/root")
	if _, err := strconv.Atoi(pid); err != nil || !ok || rest != filepath.Join(dir, "levels") {
		return dir // not a link linkMirror made
	}
	if pid != strconv.Itoa(sup.PID) || !sup.Alive() {
		return dir
	}
	return "/proc/" + pid + "/root" + dir
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

// rootlessDefaults makes the level of a user who is not root a --user
// level (it is one whatever it asks: its root is the caller, or ids of
// theirs). On the host the maps stay in host ids, the caller's own by
// default, for StartRootless to check; the re-executed launcher takes
// the maps StartRootless worked out, in its own namespace's ids.
func rootlessDefaults(cfg *Config) {
	switch {
	case rootless:
		cfg.User = true
		cfg.UIDMap, cfg.GIDMap = levelMaps()
	case NeedsRootless():
		cfg.User = true
		if cfg.UIDMap.Count == 0 {
			cfg.UIDMap = IDMap{Inner: 0, Outer: os.Geteuid(), Count: 1}
		}
		if cfg.GIDMap.Count == 0 {
			cfg.GIDMap = IDMap{Inner: 0, Outer: os.Getegid(), Count: 1}
			// As root's follows its uid map: ids of the uid range, the
			// same ones of the gid range.
			uids, gids := callerIDs()
			if u := cfg.UIDMap; uids.sub.Count > 0 && gids.sub.Count > 0 && u.Outer >= uids.sub.Outer && u.Outer+u.Count <= uids.sub.Outer+uids.sub.Count {
				cfg.GIDMap = IDMap{Inner: 0, Outer: gids.sub.Outer + u.Outer - uids.sub.Outer, Count: u.Count}
			}
		}
	}
}

// reachRunDir readies, in the launcher's own mount namespace, the way to
// run directory dir for a level whose root is an id of the caller's
// range, not the caller: the level attaches its own run directory there
// and nests levels in it, but may not search a directory of the
// caller's that others may not ($XDG_RUNTIME_DIR is 0700). The highest
// such directory above dir is covered with an empty tmpfs that anyone
// may search, in which dir is the run directory again, bound. The level
// could read nothing that is covered; the launcher needs only dir. Its
// undo is the namespace's end, with the launcher.
func reachRunDir(dir string) error {
	top := ""
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return fmt.Errorf("run directory: %s: %w", p, err)
		}
		if st.Mode&0o001 == 0 {
			top = p
		}
		if p == "/" {
			break
		}
	}
	if top == "" {
		return nil
	}
	run, err := mounts.Clone(dir)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	defer run.Close()
	if err := mounts.MountTmpfs(top); err != nil {
		return fmt.Errorf("run directory: reach it through %s: %w", top, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run directory: reach it through %s: %w", top, err)
	}
	if err := mounts.Attach(int(run.Fd()), dir); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	return nil
}

// mapsEnv carries the level's maps, in the launcher's user namespace's
// ids, from StartRootless to the launcher it re-executes.
const mapsEnv = "CL_UNSHARE_ROOTLESS_MAPS"

var levelMaps = func() func() (IDMap, IDMap) {
	v := os.Getenv(mapsEnv)
	os.Unsetenv(mapsEnv)
	var u, g IDMap
	if _, err := fmt.Sscanf(v, "%d:%d:%d/%d:%d:%d", &u.Inner, &u.Outer, &u.Count, &g.Inner, &g.Outer, &g.Count); err != nil {
		u, g = IDMap{Count: 1}, IDMap{Count: 1}
	}
	return func() (IDMap, IDMap) { return u, g }
}()

// ids are what a user who is not root may map: their own id, and the
// subordinate range /etc/subuid (or /etc/subgid) gives them, if any.
type ids struct {
	own   int
	sub   IDMap // Outer: the range's first host id; Count 0: none
	file  string
	tool  string // newuidmap or newgidmap
	field string
}

// callerIDs reads the caller's ids and subordinate ranges.
func callerIDs() (uids, gids ids) {
	uids = ids{own: os.Geteuid(), file: "/etc/subuid", tool: "newuidmap", field: "Config.UIDMap"}
	gids = ids{own: os.Getegid(), file: "/etc/subgid", tool: "newgidmap", field: "Config.GIDMap"}
	names := []string{strconv.Itoa(os.Geteuid())}
	if u, err := osuser.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		names = append(names, u.Username)
	}
	for _, x := range []*ids{&uids, &gids} {
		subs, err := user.ParseSubIDFileFilter(x.file, func(s user.SubID) bool { return slices.Contains(names, s.Name) })
		if err == nil && len(subs) > 0 && subs[0].SubID > 0 && subs[0].Count > 0 {
			x.sub = IDMap{Outer: int(subs[0].SubID), Count: int(subs[0].Count)}
		}
	}
	return uids, gids
}

// autoRootless is "auto" for a user who is not root: their own id as
// the level's root, and their subordinate range after it, which is what
// the level gets by default where there is one; asked for outright, the
// range must be there, both ranges, and the tools that map them.
func autoRootless(subFile string) (IDMap, error) {
	uids, gids := callerIDs()
	x, other := uids, gids
	if subFile == "/etc/subgid" {
		x, other = gids, uids
	}
	switch {
	case x.sub.Count == 0:
		return IDMap{}, fmt.Errorf("auto: %s gives you no subordinate range", x.file)
	case other.sub.Count == 0:
		return IDMap{}, fmt.Errorf("auto: your range in %s needs one in %s too", x.file, other.file)
	case !haveMapTools():
		return IDMap{}, fmt.Errorf("auto: mapping your range in %s needs newuidmap and newgidmap, which are not installed (apt-get install uidmap)", x.file)
	}
	return IDMap{Inner: 0, Outer: x.own, Count: 1}, nil
}

func haveMapTools() bool {
	_, errU := exec.LookPath("newuidmap")
	_, errG := exec.LookPath("newgidmap")
	return errU == nil && errG == nil
}

// rootlessMaps decides the launcher's own user namespace (whether it
// takes the caller's subordinate ranges too) and the level's maps in its
// ids, from the level's maps in host ids. The launcher's namespace maps
// the caller to 0 and, with ranges, the range to 1 and on. The level's
// root is the caller by default, with the range, if any, after it (ids
// 0 to N of the launcher's); or, asked for, ids of the range alone.
func rootlessMaps(cfg Config) (useRanges bool, uid, gid IDMap, err error) {
	uids, gids := callerIDs()
	tools := haveMapTools()
	useRanges = tools && uids.sub.Count > 0 && gids.sub.Count > 0
	own := func(x ids) IDMap { return IDMap{Inner: 0, Outer: x.own, Count: 1} }
	inRange := func(x ids, m IDMap) bool {
		return x.sub.Count > 0 && m.Outer >= x.sub.Outer && m.Outer+m.Count <= x.sub.Outer+x.sub.Count
	}
	out := [2]IDMap{}
	for i, c := range []struct {
		x ids
		m IDMap
	}{{uids, cfg.UIDMap}, {gids, cfg.GIDMap}} {
		switch {
		case c.m == own(c.x):
			out[i] = IDMap{Inner: 0, Outer: 0, Count: 1}
			if useRanges {
				out[i].Count += c.x.sub.Count
			}
		case inRange(c.x, c.m):
			if !tools {
				return false, uid, gid, fieldErr(c.x.field, "mapping ids of your range in %s needs newuidmap and newgidmap, which are not installed (apt-get install uidmap)", c.x.file)
			}
			if !useRanges {
				other := map[string]string{"/etc/subuid": "/etc/subgid", "/etc/subgid": "/etc/subuid"}[c.x.file]
				return false, uid, gid, fieldErr(c.x.field, "your range in %s needs one in %s too", c.x.file, other)
			}
			out[i] = IDMap{Inner: 0, Outer: 1 + c.m.Outer - c.x.sub.Outer, Count: c.m.Count}
		default:
			hint := fmt.Sprintf("%s gives you no range", c.x.file)
			if c.x.sub.Count > 0 {
				hint = fmt.Sprintf("or ids %d to %d, your range in %s", c.x.sub.Outer, c.x.sub.Outer+c.x.sub.Count-1, c.x.file)
			}
			return false, uid, gid, fieldErr(c.x.field, "%d:%d:%d maps ids that are not yours: without root a level maps your own id (%d, the default, with your range after it), %s", c.m.Inner, c.m.Outer, c.m.Count, c.x.own, hint)
		}
	}
	return useRanges, out[0], out[1], nil
}

// mapRanges gives the launcher's user namespace (process pid) the
// caller's ids and subordinate ranges, through the setuid newuidmap and
// newgidmap (the kernel takes a range from a user only so).
func mapRanges(pid int) error {
	uids, gids := callerIDs()
	for _, x := range []ids{uids, gids} {
		args := []string{strconv.Itoa(pid), "0", strconv.Itoa(x.own), "1", "1", strconv.Itoa(x.sub.Outer), strconv.Itoa(x.sub.Count)}
		if out, err := exec.Command(x.tool, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", x.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
