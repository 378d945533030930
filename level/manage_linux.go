package level

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cl-unshare/cl-unshare/internal/beneath"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// States a level can be in, as List shows them.
const (
	Starting = "starting" // supervisor alive, command not started yet
	Running  = "running"
	Frozen   = "frozen"
	Orphaned = "orphaned" // supervisor gone, processes left
	Exited   = "exited"   // supervisor gone, no process left
)

// Info describes a running level, derived from the kernel and checked
// against it. It is also the stable JSON schema of `list --json` and
// `inspect --json` (README.md, "JSON output").
type Info struct {
	Name          string            `json:"name"`
	State         string            `json:"state"`
	SupervisorPID int               `json:"supervisor_pid"` // 0 once gone
	CmdPID        int               `json:"cmd_pid"`        // 0 once gone
	Argv          []string          `json:"argv"`
	InnerCgroup   string            `json:"inner_cgroup"`
	Cgroups       map[string]Paths  `json:"cgroups"`
	Limits        map[string]string `json:"limits"`
	MirrorMounts  int               `json:"mirrored_mounts"`
	OOMKills      int               `json:"oom_kills"` // processes of it the kernel OOM-killed
	Levels        []Info            `json:"levels"`    // nested levels
	// Invalid says why a nested level's record failed a check against
	// its parent and the kernel (State is then "invalid").
	Invalid string `json:"invalid,omitempty"`
	// CMD's namespaces (list and inspect)
	Namespaces *Namespaces `json:"namespaces,omitempty"`
	// inspect only
	Usage       *Usage   `json:"usage,omitempty"`
	Mirror      []string `json:"mirror,omitempty"` // "MOUNTPOINT FSTYPE ROOT" as the caller sees them
	Enforcement string   `json:"enforcement,omitempty"`

	state *State
	dir   string  // its run directory as the caller sees it
	depth int     // 0 for a level of the caller's run directory
	user  *UserNS // the --user level it is or is nested below, if any
	// rootless: it is, or is nested below, a level of a user who is not
	// root, whose levels see cgroup2 at /sys/fs/cgroup whatever the host.
	rootless bool
	missing  bool    // no record: removed, or never there
	budget   *budget // what is left to read below its top level
	parent   *Info   // the level it is nested in (found by Find only)
}

// Paths are a level's cgroups in one hierarchy.
type Paths struct {
	Outer string `json:"outer"`
	Inner string `json:"inner"`
	Leaf  string `json:"leaf,omitempty"` // cgroup2: where the level's processes start
}

// Usage is what the level uses now.
type Usage struct {
	MemoryBytes int64 `json:"memory_bytes"`
	Tasks       int   `json:"tasks"`
	CPUMicros   int64 `json:"cpu_usec"`
}

// Namespaces are the inode numbers of the level's namespaces.
type Namespaces struct {
	Cgroup uint64 `json:"cgroup"`
	Mount  uint64 `json:"mnt"`
	Net    uint64 `json:"net,omitempty"`
	UTS    uint64 `json:"uts,omitempty"`
	IPC    uint64 `json:"ipc,omitempty"`
	PID    uint64 `json:"pid,omitempty"`
	User   uint64 `json:"user,omitempty"`
	Time   uint64 `json:"time,omitempty"`
}

// namespacesOf reads the namespaces of process pid (each is the host's
// unless the level asked for its own; 0 where the kernel has none).
func namespacesOf(pid int) *Namespaces {
	return &Namespaces{Cgroup: nsInode(pid, "cgroup"), Mount: nsInode(pid, "mnt"), Net: nsInode(pid, "net"),
		UTS: nsInode(pid, "uts"), IPC: nsInode(pid, "ipc"), PID: nsInode(pid, "pid"), User: nsInode(pid, "user"),
		Time: nsInode(pid, "time")}
}

// UnknownError says no level of that name is visible here.
type UnknownError struct{ Name string }

func (e *UnknownError) Error() string {
	return fmt.Sprintf("no level named %q here (cl-unshare list shows the levels you can see)", e.Name)
}

// List returns the levels started from runDir (and, nested, theirs).
func List(runDir string) ([]Info, error) {
	w, err := newWalker(runDir, true)
	if err != nil {
		return nil, err
	}
	ls, err := w.tops()
	withNamespaces(ls)
	return ls, err
}

// withNamespaces reads the namespaces of each running level's CMD.
func withNamespaces(ls []Info) {
	for k := range ls {
		if ls[k].CmdPID != 0 && ls[k].Invalid == "" {
			ls[k].Namespaces = namespacesOf(ls[k].CmdPID)
		}
		withNamespaces(ls[k].Levels)
	}
}

// cgroups adopts the level's cgroups as the caller sees them (nil if none is left).
func (i *Info) cgroups() *cgroup.Level {
	outer := map[string]string{}
	for h, p := range i.Cgroups {
		outer[h] = p.Outer
	}
	l, err := cgroup.Adopt(outer)
	if err != nil || len(l.Dirs) == 0 {
		return nil
	}
	return l
}

// Find returns one level by name: a level of runDir, or a nested one as
// PARENT/CHILD, without its own nested levels (Inspect has those). A
// nested level whose record failed a check is returned with State
// Invalid; Kill, Freeze and Join refuse it.
func Find(runDir, name string) (*Info, error) {
	w, err := newWalker(runDir, false)
	if err != nil {
		return nil, err
	}
	w.mirrors = true
	return w.find(name, false)
}

// usable returns the level, or an error if its record failed a check.
func usable(name string, i *Info, err error) (*Info, error) {
	if err == nil && i.Invalid != "" {
		return nil, &InvalidError{Name: name, Why: i.Invalid}
	}
	return i, err
}

// Inspect returns everything about one level.
func Inspect(runDir, name string) (*Info, error) {
	w, err := newWalker(runDir, false)
	if err != nil {
		return nil, err
	}
	w.mirrors = true
	i, err := w.find(name, true)
	if err != nil || i.Invalid != "" {
		return i, err
	}
	i.Usage = &Usage{}
	for h, p := range i.Cgroups {
		switch {
		case h == "cgroup2":
			if v, err := cgroup.ReadFile(p.Outer, "memory.current"); err == nil {
				i.Usage.MemoryBytes, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, err := cgroup.KeyValue(p.Outer, "cpu.stat", "usage_usec"); err == nil {
				i.Usage.CPUMicros, _ = strconv.ParseInt(v, 10, 64)
			}
		case hasController(h, "memory"):
			if v, err := cgroup.ReadFile(p.Outer, "memory.usage_in_bytes"); err == nil && i.Usage.MemoryBytes == 0 {
				i.Usage.MemoryBytes, _ = strconv.ParseInt(v, 10, 64)
			}
		case hasController(h, "cpuacct"):
			if v, err := cgroup.ReadFile(p.Outer, "cpuacct.usage"); err == nil && i.Usage.CPUMicros == 0 {
				ns, _ := strconv.ParseInt(v, 10, 64)
				i.Usage.CPUMicros = ns / 1000
			}
		}
	}
	if pids, err := cgroup.Procs(i.InnerCgroup); err == nil {
		i.Usage.Tasks = len(pids)
	}
	if i.CmdPID != 0 {
		i.Namespaces = namespacesOf(i.CmdPID)
	}
	_, v2 := i.Cgroups["cgroup2"]
	guarded := i.state.User != nil && !i.state.User.OwnsLimits
	i.Enforcement = enforcement(guarded, nsDelegate(w.cg), len(i.Cgroups) > 1 || !v2 && len(i.Cgroups) > 0, v2)
	if i.state.Rootless {
		i.Enforcement = rootlessEnforcement
	}
	return i, nil
}

// hasController reports whether hierarchy h ("cpu,cpuacct") carries c.
func hasController(h, c string) bool { return strings.Contains(","+h+",", ","+c+",") }

func nsInode(pid int, ns string) uint64 {
	var st unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, ns), &st) != nil {
		return 0
	}
	return st.Ino
}

// rootlessEnforcement is how a rootless level's limits hold: its root is
// the user who owns them, kept from them by its namespaces alone.
const rootlessEnforcement = "rootless: limits sit on the outer cgroup, above the level's namespace root, in the cgroup delegated to you; " +
	"the level's root is you, whose the limit files are: nothing in its own namespaces reaches them, " +
	"but your other processes do, and without Config.PID it can see those"

// enforcement says how "cannot raise its limits" holds for a level with
// (user) or without a user namespace, on cgroup2 (with nsdelegate or not)
// and v1 hierarchies: whether a write to its root's limit files fails or
// only has no effect.
func enforcement(user, nsdelegate, v1, v2 bool) string {
	const base = "limits sit on the outer cgroup, above the level's namespace root"
	if user {
		return "outer-cgroup+ownership: " + base + "; writes to the root's own limit files fail (EACCES): their owner is not mapped in the level's user namespace"
	}
	var how []string
	if v2 && nsdelegate {
		how = append(how, "on cgroup2 they fail (EPERM, nsdelegate)")
	} else if v2 {
		how = append(how, "on cgroup2 they succeed, without raising anything")
	}
	if v1 {
		how = append(how, "on cgroup v1 they succeed, without raising anything")
	}
	kind := "outer-cgroup"
	if v2 && nsdelegate && !v1 {
		kind = "outer-cgroup+nsdelegate"
	}
	return kind + ": " + base + "; writes to the root's own limit files: " + strings.Join(how, "; ") +
		". Without Config.User this is no boundary: root in the level is root on the host"
}

// nsDelegate reports whether the visible cgroup2 mount has nsdelegate.
func nsDelegate(infos []*mountinfo.Info) bool {
	for _, m := range infos {
		if m.FSType == "cgroup2" && strings.Contains(","+m.VFSOptions+",", ",nsdelegate,") {
			return true
		}
	}
	return false
}

// Kill signals every process of a level (nested levels included);
// SIGKILL goes through cgroup.kill, or a freezer, and waits until all died.
func Kill(runDir, name string, sig unix.Signal) error {
	cg, err := findCgroups(runDir, name)
	if err != nil {
		return err
	}
	if sig == unix.SIGKILL {
		return cg.Kill()
	}
	_, err = cg.Signal(sig)
	return err
}

// Freeze freezes or thaws a level (nested levels included) and waits
// until the kernel reports it done.
func Freeze(runDir, name string, freeze bool) error {
	cg, err := findCgroups(runDir, name)
	if err != nil {
		return err
	}
	return cg.Freeze(freeze)
}

// Update changes a running level's limits, on its outer cgroups and the
// inner ones, with the checks and messages of a start; list and inspect
// then show them. A level must be running: one being torn down, or whose
// supervisor is gone, is refused.
func Update(runDir, name string, lim cgroup.Limits) error {
	i, cg, err := findLevel(runDir, name)
	if err != nil {
		return err
	}
	if i.State != Running && i.State != Frozen {
		hint := "wait until it runs"
		if i.State == Orphaned || i.State == Exited {
			hint = "cl-unshare gc " + name + " removes what is left of it"
		}
		return fmt.Errorf("level %s is %s, not running: its limits are not changed (%s)", name, i.State, hint)
	}
	if cg == nil {
		return fmt.Errorf("level %s has no cgroup left", name)
	}
	writes, err := cg.Update(lim)
	if err != nil || i.depth > 0 {
		return err // a nested level's record is its parent's: list reads the values
	}
	return recordLimits(runDir, name, writes)
}

// recordLimits adds what Update wrote to a top level's record, under the
// state lock, if its supervisor still runs.
func recordLimits(runDir, name string, writes []cgroup.Write) error {
	unlock, err := lockState(runDir)
	if err != nil {
		return err
	}
	defer unlock()
	s, err := readState(runDir, name)
	if err != nil || !s.Supervisor.Alive() {
		return err
	}
	if s.Limits == nil {
		s.Limits = map[string]string{}
	}
	for _, w := range writes {
		s.Limits[w.File] = w.Value
	}
	return writeState(runDir, s)
}

// findCgroups finds a level and adopts its cgroups.
func findCgroups(runDir, name string) (*cgroup.Level, error) {
	i, cg, err := findLevel(runDir, name)
	if err == nil && cg == nil {
		err = fmt.Errorf("level %s has no cgroup left", i.Name)
	}
	return cg, err
}

// lookup finds a level as Find does, without describing its mirror
// (each description of one lists mounts): for the commands that act on
// a level, and for events, which looks again at every change.
func lookup(runDir, name string) (*Info, error) {
	w, err := newWalker(runDir, false)
	if err != nil {
		return nil, err
	}
	return w.find(name, false)
}

// findLevel finds a level to act on, refusing one whose record failed a
// check, and adopts its cgroups (nil if none is left).
func findLevel(runDir, name string) (*Info, *cgroup.Level, error) {
	if err := trustRunDir(runDir); err != nil {
		return nil, nil, err
	}
	i, err := lookup(runDir, name)
	if i, err = usable(name, i, err); err != nil {
		return nil, nil, err
	}
	return i, i.cgroups(), nil
}

// GC removes the levels of runDir whose supervisor is gone: it kills what
// is left, removes their cgroups, mirror mounts, run directories and state,
// and returns a line for each. Levels with a live supervisor, starting or
// running, are never touched. With names, it collects just those (nested
// ones as PARENT/CHILD), and a name it cannot collect is an error.
func GC(runDir string, names ...string) ([]string, error) {
	if err := trustRunDir(runDir); err != nil {
		return nil, err
	}
	done, err := gc(runDir, names...)
	if errors.Is(err, os.ErrPermission) && NeedsRootless() {
		// What a level whose root is an id of the user's range made is
		// that id's: removed again from a user namespace that maps it.
		if more, rerr := gcInRange(runDir, names); rerr == nil || !errors.Is(rerr, errNoRange) {
			return append(done, more...), rerr
		}
	}
	return done, err
}

func gc(runDir string, names ...string) ([]string, error) {
	var done []string
	var errs []error
	add := func(line string, err error) {
		if err != nil {
			errs = append(errs, err)
		} else if line != "" {
			done = append(done, line)
		}
	}
	if len(names) > 0 {
		var w *walker // one for all the nested names
		for _, n := range names {
			if strings.Contains(n, "/") {
				var err error
				if w == nil {
					w, err = newWalker(runDir, false)
				}
				if err != nil {
					add("", err)
					continue
				}
				add(collectNested(w, n))
			} else {
				add(collectTop(runDir, n, true))
			}
		}
		return done, errors.Join(errs...)
	}
	all, err := stateNames(runDir)
	if err != nil {
		return nil, err
	}
	for _, n := range all {
		add(collectTop(runDir, n, false))
	}
	if len(all) > 0 || mounted(runDir) {
		add("", sweep(runDir, &done))
	}
	return done, errors.Join(errs...)
}

// sweep removes run directories with no record, left by a crash between
// the two, and once no level is left the templates and RUN's own mounts.
func sweep(runDir string, done *[]string) error {
	unlock, err := lockState(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer unlock()
	ents, _ := os.ReadDir(filepath.Join(runDir, "levels"))
	for _, e := range ents {
		if _, err := os.Stat(statePath(runDir, e.Name())); errors.Is(err, os.ErrNotExist) && ValidateName(e.Name()) == nil {
			dir := filepath.Join(runDir, "levels", e.Name())
			if err := detachNoFollow(dir); err == nil && unix.Rmdir(dir) == nil {
				*done = append(*done, fmt.Sprintf("removed run directory %s (no level)", dir))
			}
		}
	}
	removePartial(runDir, done)
	if left, err := stateNames(runDir); err != nil || len(left) > 0 {
		return err
	}
	return removeTemplates(runDir)
}

// removePartial removes the half-written records (writeState's .tmp)
// of supervisors killed while writing: those whose level has no record
// or a supervisor that is gone. The caller holds the state lock.
func removePartial(runDir string, done *[]string) {
	ents, _ := os.ReadDir(stateDir(runDir))
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".json.tmp")
		if !ok || ValidateName(n) != nil || !e.Type().IsRegular() {
			continue
		}
		if s, err := readState(runDir, n); err == nil && s.Supervisor.Alive() {
			continue
		}
		if os.Remove(filepath.Join(stateDir(runDir), e.Name())) == nil {
			*done = append(*done, fmt.Sprintf("removed %s (a record its supervisor did not finish writing)", e.Name()))
		}
	}
}

// collectTop collects the level name of runDir if its supervisor is gone,
// reading its record under the state lock, so that a start taking the
// name back meanwhile is never collected. Asked for by name (named), a
// level it leaves is an error.
func collectTop(runDir, name string, named bool) (string, error) {
	if ValidateName(name) != nil {
		return "", &UnknownError{name}
	}
	unlock, err := lockState(runDir)
	if err != nil {
		if named && errors.Is(err, os.ErrNotExist) {
			return "", &UnknownError{name}
		}
		return "", err
	}
	defer unlock()
	s, err := readState(runDir, name)
	switch {
	case errors.Is(err, os.ErrNotExist) && named:
		return "", &UnknownError{name}
	case err != nil:
		if named {
			return "", fmt.Errorf("level %s: %w", name, err)
		}
		return "", nil // being written or removed right now
	case s.Supervisor.Alive():
		if named {
			return "", fmt.Errorf("level %s: its supervisor (PID %d) is alive; cl-unshare kill %s stops it", name, s.Supervisor.PID, name)
		}
		return "", nil
	}
	line, err := collect(runDir, s)
	if err != nil {
		return "", fmt.Errorf("level %s: %w", name, err)
	}
	return line, nil
}

// collectNested collects a nested level whose supervisor is gone: kills
// what is left in its cgroups (checked to lie in its parent's) and removes
// them, its record and its run directory in the parent's. The record is
// the parent's to write, so it is removed through a descriptor of the
// parent's state directory, and the run directory unmounted through one
// of its own: no path the level could redirect.
func collectNested(w *walker, name string) (string, error) {
	i, err := w.find(name, false)
	if i, err = usable(name, i, err); err != nil {
		return "", err
	}
	if i.SupervisorPID != 0 {
		return "", fmt.Errorf("level %s: its supervisor (PID %d) is alive; cl-unshare kill %s stops it", name, i.SupervisorPID, name)
	}
	pdir, err := w.openRunDir(i.parent)
	if err != nil {
		return "", fmt.Errorf("level %s: run directory of its parent: %w", name, err)
	}
	defer unix.Close(pdir)
	// Below a --user level the host has a read-only copy of the parent's
	// run directory (package mirror): say so before anything is done.
	if readOnly(pdir, "state") {
		parent := strings.TrimSuffix(name, "/"+i.Name)
		return "", fmt.Errorf("level %s: its record lies in the host's read-only copy of %s's run directory; collect it from there: cl-unshare exec %s -- cl-unshare gc %s", name, parent, parent, i.Name)
	}
	killed, removed := 0, 0
	if cg := i.cgroups(); cg != nil {
		if pids, err := cgroup.Procs(i.InnerCgroup); err == nil {
			killed = len(pids)
		}
		if err := cg.Kill(); err != nil {
			return "", fmt.Errorf("level %s: %w", name, err)
		}
		removed = len(cg.Dirs)
		if err := cg.RemoveOuter(); err != nil {
			return "", fmt.Errorf("level %s: %w", name, err)
		}
	}
	if err := unlinkBelow(pdir, "state", i.Name+".json", 0); err != nil {
		return "", fmt.Errorf("level %s: remove its record: %w", name, err)
	}
	// Its run directory here is a peer of the one in its parent (the
	// unmount propagates there), unless a --user level above has it only
	// as its supervisor's copy, which that supervisor keeps.
	if i.parent.user != nil {
		return fmt.Sprintf("removed level %s (supervisor gone; killed %d processes; removed %d cgroups and its record; its run directory goes with %s's supervisor)",
			name, killed, removed, strings.TrimSuffix(name, "/"+i.Name)), nil
	}
	if fd, err := beneath.Dir(pdir, "levels/"+i.Name, false); err == nil {
		var st unix.Statx_t
		if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &st) == nil && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
			_ = unix.Unmount(fmt.Sprintf("/proc/self/fd/%d", fd), unix.MNT_DETACH)
		}
		unix.Close(fd)
		_ = unlinkBelow(pdir, "levels", i.Name, unix.AT_REMOVEDIR)
	}
	return fmt.Sprintf("removed level %s (supervisor gone; killed %d processes; removed %d cgroups, its record and run directory)",
		name, killed, removed), nil
}

// readOnly reports whether dir, below the directory fd, is on a
// read-only mount.
func readOnly(fd int, dir string) bool {
	d, err := beneath.Dir(fd, dir, false)
	if err != nil {
		return false
	}
	defer unix.Close(d)
	var st unix.Statfs_t
	return unix.Fstatfs(d, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}

// unlinkBelow removes name from directory rel below dirfd.
func unlinkBelow(dirfd int, rel, name string, flags int) error {
	d, err := beneath.Open(dirfd, rel, unix.O_RDONLY|unix.O_DIRECTORY, false)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	err = unix.Unlinkat(d, name, flags)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func collect(runDir string, s *State) (string, error) {
	cg, err := cgroup.Adopt(s.Outer)
	if err != nil {
		return "", err
	}
	if err := removeMaking(s); err != nil {
		return "", err
	}
	killed := 0
	if len(cg.Dirs) > 0 {
		if pids, err := cgroup.Procs(cg.Dirs[0].Outer); err == nil {
			killed = len(pids)
		}
		if err := cg.Kill(); err != nil {
			return "", err
		}
		if err := cg.RemoveAdopted(); err != nil {
			return "", err
		}
	}
	// The level could write in its run directory, never in RUN/state:
	// LevelDir comes from the state, and nothing below it is followed.
	if s.LevelDir != filepath.Join(runDir, "levels", s.Name) {
		return "", fmt.Errorf("recorded run directory %s is not %s", s.LevelDir, filepath.Join(runDir, "levels", s.Name))
	}
	for _, p := range s.Persist {
		if err := unpersist(p); err != nil {
			return "", err
		}
	}
	if s.Rootless {
		// Its run directory holds the links into its launcher's (gone)
		// namespace, and nothing of it is mounted where its user is.
		if err := unlinkMirror(s.LevelDir); err != nil {
			return "", err
		}
	}
	if !s.Rootless { // a user's launcher mounted nothing where they are
		if err := detachNoFollow(s.LevelDir); err != nil {
			return "", err
		}
	}
	if err := unix.Rmdir(s.LevelDir); err != nil && !errors.Is(err, unix.ENOENT) {
		return "", fmt.Errorf("remove %s: %w", s.LevelDir, err)
	}
	if err := removeState(runDir, s.Name); err != nil {
		return "", err
	}
	return fmt.Sprintf("removed level %s (supervisor %d gone; killed %d processes; removed %d cgroups, its mirror and run directory)",
		s.Name, s.Supervisor.PID, killed, len(cg.Dirs)), nil
}

// removeMaking removes the cgroups a start that was killed while making
// them left: they hold no process (the level's first is spawned after),
// so nothing is killed, and one that is not empty stays, an error.
func removeMaking(s *State) error {
	making := map[string]string{}
	for h, dir := range s.Making {
		if _, ok := s.Outer[h]; !ok && filepath.Base(dir) == s.Name {
			making[h] = dir
		}
	}
	if len(making) == 0 {
		return nil
	}
	cg, err := cgroup.Adopt(making)
	if err != nil {
		return err
	}
	return cg.RemoveAdopted()
}

// detachNoFollow lazily unmounts dir and all below it, never following a
// symlink in its last component.
func detachNoFollow(dir string) error {
	for {
		err := unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
}
