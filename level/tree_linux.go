package level

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cl-unshare/cl-unshare/internal/beneath"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// How far a walk of nested levels goes. A level's run directory is its own
// to fill, so nothing read there may make the host's commands loop, grow
// or act outside that level.
const (
	// MaxDepth is the deepest nesting the management commands follow.
	MaxDepth = 32
	// maxNested is how many nested records are read below one top level,
	// and maxBytes how many bytes of them: a level could make a hundred
	// thousand records of links to one file, or of empty ones.
	maxNested = 4096
	maxBytes  = 4 << 20
	// maxRecord bounds a nested state file (they are well under 4 KiB).
	maxRecord = 64 << 10
)

// budget is what is left to read below one top level.
type budget struct{ nodes, bytes int }

// Invalid is the state of a nested level whose record failed a check
// against its parent and the kernel; Info.Invalid says which. Nothing is
// ever done to an invalid level.
const Invalid = "invalid"

// walker finds levels for one management command: the top ones from
// RUN/state (written by supervisors outside any level, so trusted), the
// nested ones from their parents' run directories, which the parents'
// processes can write, so everything in them is checked.
type walker struct {
	runDir string
	hs     []cgroup.Hierarchy // the caller's, for cgroup paths it reads
	cg     []*mountinfo.Info  // the caller's mounts at and below /sys/fs/cgroup
	all    []*mountinfo.Info  // the caller's whole mount table, if read
	// mirrors says to describe each level's mirror mounts: list and
	// inspect show them, kill, freeze and exec do not need them.
	mirrors bool
	// at indexes all by every directory below RUN/levels they lie in, so
	// that a list finds each level's mirror without a pass over all.
	at map[string][]*mountinfo.Info
	// sups caches supervisor's answers.
	sups map[string]Proc
}

// newWalker reads what the caller's mount table says of cgroups. A
// command about every level (list) reads the table once; one
// about a level or a few reads only the mounts it looks at, where the
// kernel can list them (Linux 6.11): the table holds every level's
// mirror, so reading it would cost more with every level running.
func newWalker(runDir string, every bool) (*walker, error) {
	w := &walker{runDir: runDir, mirrors: every}
	var err error
	if !every {
		w.cg, err = mounts.CgroupMounts()
	}
	if every || err != nil {
		if w.all, err = mounts.Current(); err != nil {
			return nil, fmt.Errorf("read mountinfo: %w", err)
		}
		w.cg = below(w.all, mounts.CgroupRoot)
	}
	if f, err := os.Open("/proc/self/cgroup"); err == nil {
		// Without them nested levels cannot be checked; they show invalid.
		w.hs, _ = cgroup.Discover(f, w.cg)
		f.Close()
	}
	return w, nil
}

// below returns the mounts of infos at and below dir.
func below(infos []*mountinfo.Info, dir string) []*mountinfo.Info {
	var out []*mountinfo.Info
	for _, m := range infos {
		if mounts.Under(m.Mountpoint, dir) {
			out = append(out, m)
		}
	}
	return out
}

// mountsAt returns the caller's mounts at and below dir, a level's
// mirror: none if nothing is mounted there.
func (w *walker) mountsAt(dir string) []*mountinfo.Info {
	if w.all != nil {
		return w.indexed(dir)
	}
	if !mounted(dir) {
		return nil
	}
	ms, err := mounts.Subtree(dir)
	if err != nil {
		if w.all, err = mounts.Current(); err != nil {
			return nil
		}
		return w.indexed(dir)
	}
	return ms
}

// indexed returns the mounts of the whole table at and below dir, a
// directory below RUN/levels.
func (w *walker) indexed(dir string) []*mountinfo.Info {
	if w.at == nil {
		w.at = map[string][]*mountinfo.Info{}
		levels := filepath.Join(w.runDir, "levels")
		for _, m := range w.all {
			for p := m.Mountpoint; mounts.Under(p, levels) && p != levels; p = filepath.Dir(p) {
				w.at[p] = append(w.at[p], m)
			}
		}
	}
	return w.at[dir]
}

// tops returns the levels started from runDir, with their nested levels.
func (w *walker) tops() ([]Info, error) {
	names, err := stateNames(w.runDir)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out []Info
	for _, n := range names {
		i, err := w.top(n)
		if err != nil {
			continue // being written or removed right now
		}
		i.Levels = w.children(i)
		out = append(out, *i)
	}
	return out, nil
}

// top reads one level started from runDir, without its nested levels.
func (w *walker) top(name string) (*Info, error) {
	s, err := readState(w.runDir, name)
	if err != nil {
		return nil, err
	}
	i := &Info{Name: name, dir: filepath.Join(w.runDir, "levels", name), state: s, user: s.User, rootless: s.Rootless,
		budget: &budget{nodes: maxNested, bytes: maxBytes}}
	if w.sups == nil {
		w.sups = map[string]Proc{}
	}
	w.sups[name] = s.Supervisor
	if s.LevelDir != i.dir {
		return w.invalid(i, fmt.Errorf("recorded run directory %s is not %s", s.LevelDir, i.dir)), nil
	}
	i.Cgroups = map[string]Paths{}
	for h, o := range s.Outer {
		i.Cgroups[h] = Paths{Outer: o, Inner: s.Inner[h]}
	}
	if err := withLeaf(i.Cgroups, s.Leaf); err != nil {
		return w.invalid(i, err), nil
	}
	if s.Supervisor.Alive() {
		i.SupervisorPID = s.Supervisor.PID
	}
	if s.Cmd.Alive() {
		i.CmdPID = s.Cmd.PID
	}
	w.describe(i)
	return i, nil
}

// children reads the nested levels of i, sorted by name.
func (w *walker) children(i *Info) []Info {
	if i.Invalid != "" {
		return nil
	}
	dir, err := w.openRunDir(i)
	if err != nil {
		return nil
	}
	defer unix.Close(dir)
	names, _ := beneath.Names(dir, "state", min(i.budget.nodes+1, maxNested))
	slices.Sort(names)
	var out []Info
	for _, e := range names {
		n, ok := strings.CutSuffix(e, ".json")
		if !ok || ValidateName(n) != nil {
			continue
		}
		if i.budget.nodes <= 0 || i.budget.bytes <= 0 {
			over := &Info{Name: n, depth: i.depth + 1}
			out = append(out, *w.invalid(over, fmt.Errorf("more than %d nested levels or %d bytes of their records below this top level: the rest is not read", maxNested, maxBytes)))
			break
		}
		i.budget.nodes--
		c := w.child(i, dir, n)
		if c.missing {
			continue // removed since the listing
		}
		c.Levels = w.children(c)
		out = append(out, *c)
	}
	return out
}

// openRunDir opens i's run directory as the caller sees it: the top
// level's is the host's RUN/levels/NAME; a nested one's lies below it,
// in directories the levels own, walked without following anything.
func (w *walker) openRunDir(i *Info) (int, error) {
	top, rel, _ := strings.Cut(strings.TrimPrefix(i.dir, filepath.Join(w.runDir, "levels")+"/"), "/")
	fd, err := unix.Open(rootlessRunDir(filepath.Join(w.runDir, "levels", top), w.supervisor(top)), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil || rel == "" {
		return fd, err
	}
	defer unix.Close(fd)
	return beneath.Dir(fd, rel, false)
}

// supervisor is the supervisor top-level level top's record names, read
// once for all the levels nested in it; only a caller who is not root
// needs it (rootlessRunDir).
func (w *walker) supervisor(top string) Proc {
	if !NeedsRootless() {
		return Proc{}
	}
	if p, ok := w.sups[top]; ok {
		return p
	}
	var p Proc
	if s, err := readState(w.runDir, top); err == nil {
		p = s.Supervisor
	}
	if w.sups == nil {
		w.sups = map[string]Proc{}
	}
	w.sups[top] = p
	return p
}

// child reads and checks the record of level name nested in p, whose run
// directory is open as pdir. What fails a check comes back as Invalid.
func (w *walker) child(p *Info, pdir int, name string) *Info {
	i := &Info{Name: name, dir: filepath.Join(p.dir, "levels", name), depth: p.depth + 1, user: p.user, rootless: p.rootless, budget: p.budget}
	if i.depth > MaxDepth {
		return w.invalid(i, fmt.Errorf("nested more than %d levels deep", MaxDepth))
	}
	s, n, err := readNested(pdir, name)
	i.budget.bytes -= n
	if err != nil {
		i.missing = errors.Is(err, os.ErrNotExist)
		return w.invalid(i, err)
	}
	i.state = s
	if want := filepath.Join(w.runDir, "levels", name); s.LevelDir != want {
		return w.invalid(i, fmt.Errorf("recorded run directory %q is not %s", s.LevelDir, want))
	}
	if i.user == nil {
		// Below levels without a user namespace every record was written
		// by the host's root; below one with it, the first such level's
		// root is what a join (cl-unshare exec) runs as, whatever records
		// further down say.
		i.user = s.User
	}
	if i.Cgroups, err = w.nestedCgroups(s, p); err != nil {
		return w.invalid(i, err)
	}
	if err := withLeaf(i.Cgroups, s.Leaf); err != nil {
		return w.invalid(i, err)
	}
	i.CmdPID, i.SupervisorPID = w.nestedProcs(s, p, i)
	w.describe(i)
	return i
}

func (w *walker) invalid(i *Info, why error) *Info {
	i.State, i.Invalid, i.Cgroups, i.Argv = Invalid, why.Error(), nil, nil
	if i.state != nil {
		i.Argv = i.state.Argv
	}
	i.SupervisorPID, i.CmdPID = 0, 0
	return i
}

// readNested reads a nested level's record from the state directory of its
// parent's run directory: a small regular file on that tmpfs, no links.
func readNested(pdir int, name string) (*State, int, error) {
	sd, err := beneath.Dir(pdir, "state", true)
	if err != nil {
		return nil, 0, fmt.Errorf("state directory: %w", err)
	}
	defer unix.Close(sd)
	b, err := beneath.ReadFile(sd, name+".json", maxRecord, unix.TMPFS_MAGIC)
	if err != nil {
		return nil, 0, fmt.Errorf("state file %s.json: %w", name, err)
	}
	s, err := decodeState(b, name)
	return s, len(b), err
}

// nestedCgroups maps a nested record's cgroups (paths as its supervisor,
// inside p, saw them) to the caller's, as directories below p's inner
// cgroup in the same hierarchy: the one place a level may make cgroups.
func (w *walker) nestedCgroups(s *State, p *Info) (map[string]Paths, error) {
	out := map[string]Paths{}
	if len(s.Inner) != len(s.Outer) {
		return nil, errors.New("recorded inner and outer cgroups differ")
	}
	for _, h := range slices.Sorted(maps.Keys(s.Outer)) {
		pp, ok := p.Cgroups[h]
		if !ok {
			return nil, fmt.Errorf("hierarchy %q is not one of its parent's", h)
		}
		mnt, ok := w.mountOf(h)
		if !ok {
			return nil, fmt.Errorf("hierarchy %q is not mounted under %s here", h, mounts.CgroupRoot)
		}
		if p.rootless && h == "cgroup2" {
			mnt = mounts.CgroupRoot // the level's own layout (withoutV1)
		}
		rel, err := belowMount(s.Outer[h], mnt)
		if err != nil {
			return nil, fmt.Errorf("%s outer cgroup: %w", h, err)
		}
		if s.Inner[h] != s.Outer[h]+"/"+cgroup.InnerName {
			return nil, fmt.Errorf("%s inner cgroup %q is not %s/%s", h, s.Inner[h], s.Outer[h], cgroup.InnerName)
		}
		if err := cgroupBelow(pp.Inner, rel); err != nil {
			return nil, fmt.Errorf("%s cgroup %s below its parent's %s: %w", h, rel, pp.Inner, err)
		}
		o := pp.Inner + "/" + rel
		out[h] = Paths{Outer: o, Inner: o + "/" + cgroup.InnerName}
	}
	return out, nil
}

// belowMount returns p relative to the mount point mnt. p must be clean
// (no "//", ".", "..") and strictly below mnt.
func belowMount(p, mnt string) (string, error) {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return "", fmt.Errorf("%q is not a clean absolute path", p)
	}
	rel, ok := mounts.Below(mnt, p)
	if !ok {
		return "", fmt.Errorf("%q is not below %s", p, mnt)
	}
	return rel, nil
}

// cgroupBelow checks that rel and rel/level resolve to directories below
// dir on the same cgroupfs mount, with nothing followed. A cgroup removed
// meanwhile is fine: the level is gone, and its paths name nothing else.
func cgroupBelow(dir, rel string) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, r := range []string{rel, rel + "/" + cgroup.InnerName} {
		c, err := beneath.Dir(fd, r, true)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		unix.Close(c)
	}
	return nil
}

// mountOf is where hierarchy h is mounted in the caller's layout, which
// every level rebuilds the same under /sys/fs/cgroup.
func (w *walker) mountOf(h string) (string, bool) {
	for _, x := range w.hs {
		if x.Name() == h && mounts.Under(x.Mount, mounts.CgroupRoot) {
			return x.Mount, true
		}
	}
	return "", false
}

// nestedProcs finds a nested level's CMD and supervisor as the caller's
// PIDs. Their records are PIDs in the nested supervisor's PID namespace,
// so a process counts only if the kernel puts it where it must be (CMD in
// the level's inner cgroup, the supervisor in its parent's and outside the
// level) with the recorded start time and the recorded PID among its PIDs.
func (w *walker) nestedProcs(s *State, p, i *Info) (cmd, sup int) {
	if s.Cmd.PID != 0 {
		if dir := startOf(i.Cgroups); dir != "" {
			cmd = findIn(s.Cmd, dir)
		}
		if cmd == 0 && s.Cmd.Alive() && w.within(s.Cmd.PID, i.Cgroups, false) {
			cmd = s.Cmd.PID
		}
	}
	if s.InPlace {
		return cmd, cmd // CMD is its own supervisor
	}
	if cmd != 0 {
		if pp := ppid(cmd); sameProc(s.Supervisor, pp) && w.within(pp, p.Cgroups, true) && !w.within(pp, i.Cgroups, false) {
			return cmd, pp
		}
	}
	if s.Supervisor.Alive() && w.within(s.Supervisor.PID, p.Cgroups, true) && !w.within(s.Supervisor.PID, i.Cgroups, false) {
		sup = s.Supervisor.PID
	}
	return cmd, sup
}

// within reports whether pid is in one of the given cgroups (the inner
// ones, or the outer ones) or below, by /proc/PID/cgroup as the kernel
// shows it to the caller; cgroup2 decides where it exists.
func (w *walker) within(pid int, cgs map[string]Paths, inner bool) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	ms, err := cgroup.ParseProcCgroup(f)
	f.Close()
	if err != nil {
		return false
	}
	names := slices.Sorted(maps.Keys(cgs))
	if _, ok := cgs["cgroup2"]; ok {
		names = []string{"cgroup2"}
	}
	for _, h := range names {
		dir := cgs[h].Outer
		if inner {
			dir = cgs[h].Inner
		}
		for _, x := range w.hs {
			if x.Name() != h {
				continue
			}
			for _, m := range ms {
				if (m.ID == 0) == x.V2() && (x.V2() || strings.Join(m.Controllers, ",") == h) {
					return mounts.Under(x.Dir(m.Path), dir)
				}
			}
		}
	}
	return false
}

// withLeaf adds the recorded cgroup2 leaf, a plain name, to cgs.
func withLeaf(cgs map[string]Paths, leaf string) error {
	p, ok := cgs["cgroup2"]
	if leaf == "" || !ok {
		return nil
	}
	if err := ValidateName(leaf); err != nil {
		return fmt.Errorf("recorded leaf: %w", err)
	}
	p.Leaf = p.Inner + "/" + leaf
	cgs["cgroup2"] = p
	return nil
}

// startOf is the cgroup a level's processes start in: cgroup2's leaf,
// else its inner cgroup, else the first hierarchy's.
func startOf(cgs map[string]Paths) string {
	if p, ok := cgs["cgroup2"]; ok && p.Leaf != "" {
		return p.Leaf
	}
	return innerOf(cgs)
}

// innerOf is the inner cgroup where a level's processes are listed:
// cgroup2's, else the first hierarchy's.
func innerOf(cgs map[string]Paths) string {
	if p, ok := cgs["cgroup2"]; ok {
		return p.Inner
	}
	for _, h := range slices.Sorted(maps.Keys(cgs)) {
		return cgs[h].Inner
	}
	return ""
}

// findIn finds, among the processes directly in cgroup dir (listed as the
// caller's PIDs), the one started at rec.Start whose PIDs include rec.PID.
func findIn(rec Proc, dir string) int {
	pids, err := cgroup.Fields(dir, "cgroup.procs")
	if err != nil {
		return 0
	}
	for _, f := range pids {
		if pid, err := strconv.Atoi(f); err == nil && sameProc(rec, pid) {
			return pid
		}
	}
	return 0
}

// describe derives what is shown about a level with known cgroups and
// processes: the inner cgroup, the state, the mirror.
func (w *walker) describe(i *Info) {
	s := i.state
	i.Argv, i.Limits = s.Argv, liveLimits(s.Limits, i.Cgroups)
	i.InnerCgroup = innerOf(i.Cgroups)
	cg := i.cgroups()
	if cg != nil {
		i.OOMKills = cg.OOMKills()
	}
	switch {
	case i.SupervisorPID != 0 && s.Cmd.PID == 0:
		i.State = Starting
	case cg != nil && cg.Frozen():
		i.State = Frozen
	case i.SupervisorPID != 0:
		i.State = Running
	case cg != nil && !cg.Empty():
		i.State = Orphaned
	default:
		i.State = Exited
	}
	if !w.mirrors {
		return
	}
	for _, m := range w.mountsAt(filepath.Join(i.dir, "cgroup")) {
		i.MirrorMounts++
		i.Mirror = append(i.Mirror, m.Mountpoint+" "+m.FSType+" "+m.Root)
	}
}

// liveLimits are the values of a level's recorded limit files as its
// outer cgroups hold them now (an update may have changed them; a
// nested level's record is its parent's, never rewritten), or as
// recorded where the file cannot be read. A nested record is the
// level's to write: only a name --set would take is read, a file of the
// cgroup itself, never a path.
func liveLimits(recorded map[string]string, cgs map[string]Paths) map[string]string {
	if len(recorded) == 0 {
		return recorded
	}
	out := map[string]string{}
	for f, v := range recorded {
		out[f] = v
		if _, _, err := ParseSetting(f + "=" + v); err != nil {
			continue
		}
		for _, h := range slices.Sorted(maps.Keys(cgs)) {
			if got, err := cgroup.ReadFile(cgs[h].Outer, f); err == nil {
				out[f] = got
				break
			}
		}
	}
	return out
}

// find returns one level by name: a level of runDir, or a nested one as
// PARENT/CHILD, reading only the records on the way to it.
func (w *walker) find(name string, nested bool) (*Info, error) {
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if ValidateName(p) != nil {
			return nil, &UnknownError{name}
		}
	}
	i, err := w.top(parts[0])
	if errors.Is(err, os.ErrNotExist) {
		return nil, &UnknownError{name}
	}
	if err != nil {
		return nil, err
	}
	for _, p := range parts[1:] {
		if i.Invalid != "" {
			return nil, &InvalidError{Name: name, Why: i.Name + ": " + i.Invalid}
		}
		dir, err := w.openRunDir(i)
		if err != nil {
			return nil, &UnknownError{name}
		}
		c := w.child(i, dir, p)
		unix.Close(dir)
		if c.missing {
			return nil, &UnknownError{name}
		}
		c.parent, i = i, c
	}
	if nested {
		i.Levels = w.children(i)
	}
	return i, nil
}

// InvalidError says a level's record failed a check, so nothing is done.
type InvalidError struct{ Name, Why string }

func (e *InvalidError) Error() string {
	return fmt.Sprintf("level %s is invalid (%s): cl-unshare does not act on it", e.Name, e.Why)
}
