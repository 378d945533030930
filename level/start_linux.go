package level

import (
	"errors"
	"fmt"
	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mirror"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// StepError is a failure inside the new namespaces, with its errno.
type StepError = nsexec.StepError

// InUseError says a level of that name already exists.
type InUseError struct {
	Name string
	Path string
	Why  string // what is alive in it, if known
}

func (e *InUseError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("Config.Name: level %q is already in use (%s); choose another name", e.Name, e.Why)
	}
	return fmt.Sprintf("Config.Name: level %q is already in use (%s exists); choose another name", e.Name, e.Path)
}

// Level is a started level.
type Level struct {
	Name     string
	LevelDir string // RUN/levels/NAME on the host
	runDir   string
	state    *State
	statusFD int
	watch    *exec.Cmd     // the --kill-child watchdog
	done     chan struct{} // closed by Close, ends StartContext's watcher
	st       *stage        // the init stage, then the command it became
	cgroups  *cgroup.Level
	mu       sync.Mutex // closed is read by StartContext's watcher
	closed   bool
	stopped  string // why cl-unshare stopped the level, if it did
	// stoppedCode is the exit code that says so (0: the command's own),
	// and untimed, closed by Close, ends the wait for Config.Timeout.
	stoppedCode int
	untimed     chan struct{}
	spent       *Spent // what it used, and how many processes of it the
	oomKills    int    // kernel OOM-killed, once Wait has read them
	// prepared is the thread a --user level was cloned from, and mirror
	// what copies its cgroup mounts to the host.
	prepared *prepared
	mirror   *mirror.Keeper
	// template is held until the level is recorded; clones until its
	// init stage has them.
	template *template
	clones   clones
	undo     []func() error
	// viewPids are the view's watcher and server (Config.ProcView).
	viewPids []int
	// remote, for a caller who is not root: the launcher in a user
	// namespace that runs the level (everything above but Name, LevelDir,
	// runDir, cgroups and what Wait reads is then unset).
	remote *remote
}

// Start validates cfg, builds the level and starts its command. When it
// returns an error nothing of the level is left. A caller who is not
// root gets a --user level in the cgroup delegated to it, run by a
// launcher in a user namespace of its own: this program, re-executed
// (see Init), which the Level returned acts through.
func Start(cfg Config) (_ *Level, err error) {
	if NeedsRootless() {
		return startRemote(cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rootless && cfg.UIDMap.Outer != 0 {
		// The caller's supplementary groups are theirs, not the level's
		// (whose root holds none of the caller's ids): a group of theirs
		// (docker, say) would be the level's way out. The launcher
		// drops them for everything it starts.
		if err := syscall.Setgroups(nil); err != nil {
			return nil, fieldErr("Config.UIDMap", "the level's root is not you, and your supplementary groups could not be dropped for it: %v (/proc/self/setgroups: %s)", err, strings.TrimSpace(readFileString("/proc/self/setgroups")))
		}
		if err := reachRunDir(cfg.RunDir); err != nil {
			return nil, err
		}
	}
	// CMD must not hold the harness's status or ready fd open.
	for _, fd := range []int{cfg.ReadyFD, cfg.StatusFD} {
		if fd > 0 {
			unix.CloseOnExec(fd)
		}
	}
	l := newLevel(cfg, &State{Supervisor: self()})
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
		}
	}()
	layout, err := l.build(cfg, 0)
	if err != nil {
		return nil, err
	}
	defer l.clones.close()
	if cfg.ProcView {
		if err := l.startProcView(); err != nil {
			return nil, err
		}
	}
	if err := l.spawn(cfg, layout); err != nil {
		return nil, err
	}
	l.state.Cmd = procOf(l.Pid())
	if err := writeState(cfg.RunDir, l.state); err != nil {
		return nil, err
	}
	l.template.Close() // recorded: gc now sees the level
	l.template = nil
	if cfg.KillSignal != 0 {
		if err := l.startWatch(cfg.KillSignal); err != nil {
			return nil, err
		}
	}
	if cfg.Timeout > 0 {
		l.startTimeout(cfg)
	}
	l.statusFD = cfg.StatusFD
	if err := l.report(readyEvent(l)); err != nil {
		return nil, err
	}
	if cfg.ReadyFD > 0 {
		unix.Close(cfg.ReadyFD)
	}
	return l, nil
}

// newLevel is the level cfg describes, with what its record s says of
// every level.
func newLevel(cfg Config, s *State) *Level {
	l := &Level{Name: cfg.Name, LevelDir: filepath.Join(cfg.RunDir, "levels", cfg.Name), runDir: cfg.RunDir, state: s}
	s.Name, s.Argv, s.LevelDir, s.Started = cfg.Name, cfg.Argv, l.LevelDir, time.Now()
	if cfg.User {
		s.User = &UserNS{UIDMap: cfg.UIDMap, GIDMap: cfg.GIDMap}
	}
	s.Rootless = rootless
	return l
}

// build enters the template, claims the level's name and makes what
// every level has: its cgroups (pid already in them when not 0), its
// record and its run directory, whose clones it keeps for the init stage.
// It returns the layout the init stage mounts. On error, Close undoes
// what it did.
func (l *Level) build(cfg Config, pid int) (mounts.Layout, error) {
	var layout mounts.Layout
	p, t, infos, err := enterTemplate(cfg.RunDir)
	if err != nil {
		return layout, err
	}
	l.prepared, l.template = p, t
	if err := claimName(cfg.RunDir, l.state); errors.Is(err, os.ErrExist) {
		return layout, &InUseError{Name: cfg.Name, Path: statePath(cfg.RunDir, cfg.Name), Why: alive(cfg.RunDir, cfg.Name)}
	} else if err != nil {
		return layout, fmt.Errorf("run directory: %w", err)
	}
	l.undo = append(l.undo, func() error { return removeState(cfg.RunDir, cfg.Name) })
	if layout, err = hostLayout(infos); err != nil {
		return layout, err
	}
	if hs, err := discover(infos); err == nil {
		_, out := leaveOut(hs)
		layout = withoutV1(layout, out)
	}
	if err := roomForMounts(layout); err != nil {
		return layout, err
	}
	if err := l.createCgroups(cfg, infos, pid); err != nil {
		return layout, err
	}
	if err := l.makeRunDir(cfg); err != nil {
		return layout, mountLimit(err, layout)
	}
	if cfg.User {
		if err := l.handOver(cfg); err != nil {
			return layout, err
		}
	}
	return layout, nil
}

// clones are detached copies of the level's run directory and mirror,
// in their peer groups, for the init stage to attach where it sees them.
// clones are detached clones of the level's host mounts for its init
// stage: its run directory, its mirror, and its view of /proc.
type clones struct {
	run, mirror *os.File
	view        []*os.File // a clone of each file of the view, in procview.Files' order
}

func (c clones) close() {
	for _, f := range append([]*os.File{c.run, c.mirror}, c.view...) {
		if f != nil {
			f.Close()
		}
	}
}

// createCgroups makes the level's cgroups in every hierarchy, with its
// limits, and records them.
func (l *Level) createCgroups(cfg Config, infos []*mountinfo.Info, pid int) error {
	hs, writes, err := plan(infos, cfg.Limits)
	if err != nil {
		return err
	}
	if pid == 0 {
		// A supervisor alone in a delegated cgroup steps into a leaf of
		// it, and the levels go beside that leaf (exec in place needs no
		// leaf: it moves into the level itself). A later failure does not
		// move it back: where the launcher lives is not part of the
		// level, and its next start would only step in again.
		for _, h := range hs {
			moved, err := cgroup.EnterDelegatedLeaf(h, os.Getpid())
			if err != nil {
				return err
			}
			if moved {
				if hs, writes, err = plan(infos, cfg.Limits); err != nil {
					return err
				}
				break
			}
		}
	}
	if err := failpoint.At("cgroups"); err != nil {
		return err
	}
	// Recorded first: a supervisor killed while making them leaves gc
	// the record of what it may have made.
	l.state.Making = cgroup.Outers(hs, cfg.CgroupParent, cfg.Name, pid)
	if err := writeState(cfg.RunDir, l.state); err != nil {
		return err
	}
	l.cgroups, err = cgroup.Create(hs, cfg.CgroupParent, cfg.Name, writes, pid)
	var exists *cgroup.ExistsError
	if errors.As(err, &exists) {
		return &InUseError{Name: cfg.Name, Path: exists.Path}
	} else if err != nil {
		return fmt.Errorf("create cgroups: %w", err)
	}
	l.undo = append(l.undo, l.cgroups.Remove)
	if err := l.recordCgroups(cfg, writes); err != nil {
		return err
	}
	return writeState(cfg.RunDir, l.state)
}

func hostLayout(infos []*mountinfo.Info) (mounts.Layout, error) {
	layout, err := mounts.LayoutFromMounts(infos)
	if err != nil {
		return layout, fmt.Errorf("cgroup layout: %w", err)
	}
	layout.Symlinks, err = mounts.ReadSymlinks(mounts.CgroupRoot)
	if err != nil {
		return layout, fmt.Errorf("cgroup layout: %w", err)
	}
	return layout, nil
}

// discover finds this process's cgroup hierarchies.
func discover(infos []*mountinfo.Info) ([]cgroup.Hierarchy, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hs, err := cgroup.Discover(f, infos)
	if err != nil {
		return nil, fmt.Errorf("find cgroups: %w", err)
	}
	return hs, nil
}

func plan(infos []*mountinfo.Info, lim cgroup.Limits) ([]cgroup.Hierarchy, []cgroup.Write, error) {
	hs, err := discover(infos)
	if err != nil {
		return nil, nil, err
	}
	hs, _ = leaveOut(hs)
	var v2 []string
	var where string
	for _, h := range hs {
		if h.V2() {
			// A user who is not root has what their cgroup was given.
			at := h.Mount
			if rootless {
				at, where = h.Dir(cgroup.Base(h)), h.Dir(cgroup.Base(h))
			}
			if v2, err = cgroup.Fields(at, "cgroup.controllers"); err != nil {
				return nil, nil, fmt.Errorf("find cgroups: %w", err)
			}
		}
	}
	writes, err := cgroup.Plan(lim, hs, v2)
	var ce *cgroup.ControllerError
	if errors.As(err, &ce) && where != "" {
		ce.Where = where
	}
	return hs, writes, err
}

// makeRunDir makes RUN/levels/NAME a shared tmpfs, and its mirror below
// it: the init stage attaches clones of both, in their peer groups, so
// the cgroup mounts the level makes show up here.
func (l *Level) makeRunDir(cfg Config) error {
	if err := failpoint.At("run-dir"); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(l.LevelDir), 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := os.Mkdir(l.LevelDir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return &InUseError{Name: cfg.Name, Path: l.LevelDir}
		}
		return fmt.Errorf("run directory: %w", err)
	}
	l.undo = append(l.undo, func() error { return removeDir(l.LevelDir) })
	if rootless {
		// Made before the level's tmpfs covers them here: the host, which
		// sees none of this namespace's mounts, finds the links instead.
		l.undo = append(l.undo, func() error { return unlinkMirror(l.LevelDir) })
		if err := linkMirror(l.LevelDir); err != nil {
			return err
		}
	}
	if err := mounts.MountTmpfs(l.LevelDir); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	l.undo = append(l.undo, func() error { return detach(l.LevelDir) })
	if err := mounts.MakeShared(l.LevelDir); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	// The mirror is a mount of its own: the level moves its copy to its
	// /sys/fs/cgroup, so that its cgroup filesystems are mounted once
	// there and reach the host here, not twice (here and under RUN).
	mirror := filepath.Join(l.LevelDir, "cgroup")
	if err := os.Mkdir(mirror, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := mounts.MountLayoutRoot(mirror); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := mounts.MakeShared(mirror); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	var err error
	if l.clones.run, err = mounts.Clone(l.LevelDir); err == nil {
		l.clones.mirror, err = mounts.Clone(mirror)
	}
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	return nil
}

func removeDir(dir string) error {
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

func detach(dir string) error {
	err := mounts.Detach(dir)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// mirrorInterval is the least time between two updates of a --user
// level's mirror: a level that mounts and unmounts in a loop costs the
// supervisor at most one read of the mount table per interval.
const mirrorInterval = 10 * time.Millisecond

// newMirror readies the copy of a --user level's mounts to the host
// (package mirror). A level over the bound is stopped, and Wait says why.
func (l *Level) newMirror(cfg Config) error {
	bound := cfg.MirrorMax
	if bound == 0 {
		bound = mirror.DefaultMax
	}
	var err error
	l.mirror, err = mirror.New(mirror.Config{RunDir: cfg.RunDir, Host: l.LevelDir, Max: bound, Do: l.prepared.do,
		Over: func(n int) {
			l.mu.Lock()
			l.stopped = fmt.Sprintf("it has %d mounts under its /sys/fs/cgroup and run directory, more than Config.MirrorMax %d", n, bound)
			l.mu.Unlock()
			_ = l.cgroups.Kill()
		}})
	return err
}

// recordCgroups makes the cgroup2 leaf and puts the level's cgroups and
// limits in its state.
func (l *Level) recordCgroups(cfg Config, writes []cgroup.Write) error {
	if cfg.Leaf != "" {
		if err := l.cgroups.AddLeaf(cfg.Leaf); err != nil {
			return fmt.Errorf("create cgroups: %w", err)
		}
		if l.cgroups.V2() != nil {
			l.state.Leaf = cfg.Leaf
		}
	}
	l.state.Outer, l.state.Inner, l.state.Limits = l.OuterCgroups(), l.InnerCgroups(), map[string]string{}
	l.state.Making = nil
	for _, w := range writes {
		l.state.Limits[w.File] = w.Value
	}
	return nil
}

// unmapped is an id of this process's user namespace (whose map is in
// file, /proc/self/uid_map) that map m leaves out, 0 (root) where it can:
// the owner of files the level may not write. A level nested in a --user
// level with its parent's root (0:0:65536) may find none.
func unmapped(m IDMap, file string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	ours := parseIDMaps(string(b))
	for _, id := range []int{0, 65534, m.Outer + m.Count, m.Outer - 1} {
		if id >= 0 && (id < m.Outer || id >= m.Outer+m.Count) && slices.ContainsFunc(ours, func(e IDMap) bool {
			return id >= e.Inner && id < e.Inner+e.Count
		}) {
			return id, true
		}
	}
	return 0, false
}

// handOver gives the level's root (a host id in a user namespace) what a
// delegatee gets: its inner cgroup directories and, in them, the files the
// kernel lists as delegatable, plus its run directory. The limit files stay
// the host's, so the level cannot write them: the kernel enforces it.
func (l *Level) handOver(cfg Config) error {
	uid, gid := cfg.UIDMap.Outer, cfg.GIDMap.Outer
	files := []string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control"}
	if b, err := os.ReadFile("/sys/kernel/cgroup/delegate"); err == nil {
		files = strings.Fields(string(b))
	}
	// The rest of the root's files are the host's root's, which the
	// level's user namespace does not map, so the kernel refuses its
	// writes. Unless it maps root itself (-r, run as root): then they go
	// to an id it does not map, for the same refusal.
	keeper, ok1 := unmapped(cfg.UIDMap, "/proc/self/uid_map")
	keeperG, ok2 := unmapped(cfg.GIDMap, "/proc/self/gid_map")
	l.state.User.OwnsLimits = !ok1 || !ok2
	for _, d := range l.cgroups.Dirs {
		names := files
		if !d.V2() {
			names = []string{"cgroup.procs", "tasks"}
		}
		if ok1 && ok2 && (keeper != 0 || keeperG != 0) {
			ents, err := os.ReadDir(d.Inner)
			if err != nil {
				return fmt.Errorf("hand over %s: %w", d.Inner, err)
			}
			for _, e := range ents {
				if p := filepath.Join(d.Inner, e.Name()); !e.IsDir() && !slices.Contains(names, e.Name()) {
					if err := os.Lchown(p, keeper, keeperG); err != nil {
						return fmt.Errorf("keep %s from the level's root (%d:%d): %w", p, keeper, keeperG, err)
					}
				}
			}
		}
		dirs := []string{d.Inner}
		if d.Leaf != "" {
			dirs = append(dirs, d.Leaf) // its own, as the kernel's delegation model has it
		}
		for _, dir := range dirs {
			for _, p := range append([]string{""}, names...) {
				p = filepath.Join(dir, p)
				if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("hand %s to the level's root (%d:%d): %w", p, uid, gid, err)
				}
			}
			if rootless && uid != 0 {
				// A level of the caller's whose root is another id of
				// theirs: the caller's exec still moves its command in
				// here, as the group that owns cgroup.procs. The level
				// cannot use the group: its namespace does not map it.
				p := filepath.Join(dir, "cgroup.procs")
				if err := os.Lchown(p, uid, 0); err != nil {
					return fmt.Errorf("let the caller's exec into %s: %w", dir, err)
				}
				if err := os.Chmod(p, 0o664); err != nil {
					return fmt.Errorf("let the caller's exec into %s: %w", dir, err)
				}
			}
		}
	}
	for _, p := range []string{l.LevelDir, filepath.Join(l.LevelDir, "cgroup")} {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("hand %s to the level's root: %w", p, err)
		}
	}
	return nil
}

// spawn starts the init stage in a new mount namespace, places it in the
// level's cgroups (before it may create its cgroup namespace), releases
// it, and waits until it has exec'd the command or failed.
func (l *Level) spawn(cfg Config, layout mounts.Layout) error {
	c := &nsexec.Config{
		Name: cfg.Name, RunDir: cfg.RunDir, LevelDir: l.LevelDir, Layout: layout, Argv: cfg.Argv,
		KillSignal: int(cfg.KillSignal), MountProc: cfg.MountProc, Init: cfg.Init, Leaf: l.state.Leaf, Mode: nsexec.ModeLevel,
		RunDirFD: nsexec.RunDirFD, MirrorFD: nsexec.MirrorFD,
		Hostname: cfg.Hostname, Domainname: cfg.Domainname, Loopback: cfg.Net,
		SetUID: cfg.SetUID, SetGID: cfg.SetGID, KeepCaps: cfg.KeepCaps,
		Propagation: cfg.Propagation, Root: cfg.Root, WorkDir: cfg.WorkDir, Persist: len(cfg.Persist) > 0,
		Time: cfg.Time, Monotonic: int64(cfg.Monotonic), Boottime: int64(cfg.Boottime),
	}
	// The stage forks from the prepared thread: a clone of the template
	// (or, with a user namespace, of its prepared copy), and the parent
	// Pdeathsig follows.
	run := func(start func() error) error { return l.prepared.do(start) }
	files := []*os.File{l.clones.run, l.clones.mirror}
	c.ProcView = cfg.ProcView
	if cfg.User {
		c.Mode, files = nsexec.ModeUserLevel, nil
		err := l.prepared.do(func() error { return prepareMounts(c, l.clones.run, l.clones.mirror) })
		if err == nil {
			err = l.newMirror(cfg)
		}
		if err != nil {
			return err
		}
	}
	spec := stageSpec{
		stdio: stdioOf(cfg.Stdin, cfg.Stdout, cfg.Stderr), files: files,
		attr: cloneAttr(cfg), run: run,
	}
	if v2 := l.cgroups.V2(); v2 != nil {
		spec.cgroup = v2.Inner
	}
	st, err := startStage(spec)
	if st != nil {
		l.st = st // started, even if what follows failed: Close ends it
	}
	if spawn := (*spawnError)(nil); errors.As(err, &spawn) {
		return fmt.Errorf("start init stage: %w", spawn.err)
	} else if err != nil {
		return err
	}
	join := func(pid int) error { return l.cgroups.Join(pid, spec.cgroup != "") }
	err = st.release(c, join, l.requests(st, cfg))
	if errors.Is(err, nsexec.ErrDied) && cfg.Limits.Memory > 0 && l.cgroups.OOMKills() > 0 {
		return fieldErr("Limits.Memory", "%d bytes is below what the level needs to start: the kernel killed its init stage for lack of memory (%v); give it at least a few MiB", cfg.Limits.Memory, st.cmd.ProcessState)
	}
	if err == nil && l.mirror != nil {
		// The level's layout is there: on the host before "ready".
		if err = failpoint.At("mirror"); err == nil {
			err = l.mirror.Sync()
		}
		l.mirror.Start(mirrorInterval)
	}
	return err
}

// requests answers what a level's init stage asks of its launcher.
func (l *Level) requests(st *stage, cfg Config) nsexec.Requests {
	return nsexec.Requests{
		Persist:  func() error { return l.persist(cfg, st.cmd.Process.Pid) },
		ProcView: func() error { return l.attachProcView(st.cmd.Process.Pid) },
		SetGroup: func() error {
			// The init stage may not join its run directory and mirror to
			// the prepared namespace's; we may.
			return l.mirror.Join(fmt.Sprintf("/proc/%d/root", st.cmd.Process.Pid))
		},
		AttachProc: func(fd int) error {
			if err := failpoint.At("attach proc"); err != nil {
				return err
			}
			return l.prepared.do(func() error { return mounts.Attach(fd, "/proc") })
		},
	}
}

// nsFlags are the clone flags of the namespaces Config.Net, UTS and IPC
// ask for (with User, the user namespace the clone makes owns them).
func nsFlags(cfg Config) uintptr {
	var f uintptr
	for _, n := range []struct {
		on   bool
		flag uintptr
	}{{cfg.Net, unix.CLONE_NEWNET}, {cfg.UTS, unix.CLONE_NEWUTS}, {cfg.IPC, unix.CLONE_NEWIPC}} {
		if n.on {
			f |= n.flag
		}
	}
	return f
}

// cloneAttr is the init stage's namespaces and ids.
func cloneAttr(cfg Config) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: unix.SIGKILL}
	if cfg.PID {
		attr.Cloneflags |= unix.CLONE_NEWPID
	}
	attr.Cloneflags |= nsFlags(cfg)
	if cfg.User {
		// The init stage copies its mount namespace itself, once the
		// launcher has put in place what it must hold locked.
		attr.Cloneflags = attr.Cloneflags&^unix.CLONE_NEWNS | unix.CLONE_NEWUSER
		attr.UidMappings = sysMaps(cfg.UIDMap, "/proc/self/uid_map")
		attr.GidMappings = sysMaps(cfg.GIDMap, "/proc/self/gid_map")
		attr.GidMappingsEnableSetgroups = cfg.AllowSetgroups
		// Without it the child keeps its host uid and host-root DAC.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	return attr
}

// readFileString is a small file's text, or "" if it cannot be read.
func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
