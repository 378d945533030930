package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dirs are a level's cgroups in one hierarchy.
type Dirs struct {
	Hierarchy
	Parent string // directory of PARENT
	Outer  string // PARENT/NAME: the limits live here
	Inner  string // PARENT/NAME/level: the level's namespace root
	Leaf   string // cgroup2 only: Inner/LEAF, where the level's processes start ("" for none)
	made   []string
	enable []string // controllers we enabled in a parent we did not create
}

// Level is a level's cgroups in every hierarchy.
type Level struct {
	Dirs []*Dirs
}

// InnerName is the inner cgroup's name under the outer one.
const InnerName = "level"

// ExistsError says a level's outer cgroup is already there.
type ExistsError struct{ Path string }

func (e *ExistsError) Error() string { return fmt.Sprintf("cgroup %s already exists", e.Path) }

// NoInternalProcessHint explains EBUSY from enabling a v2 controller.
const NoInternalProcessHint = "the parent cgroup has processes (cgroup v2 no-internal-process rule); use Config.CgroupParent or run under a delegated unit"

// Base is the cgroup under which a process's levels go in hierarchy h:
// its own cgroup, except on cgroup v2 when that cgroup cannot hand its
// controllers down. A cgroup holding processes (the launcher at least) may
// not enable domain controllers for children (the no-internal-process
// rule), so a login session scope, say, could only give levels without
// limits. Then levels go one step up, beside the launcher's cgroup: its
// parent holds no process and already offers what the launcher's cgroup
// has. The root cgroup is exempt from the rule, and a cgroup namespace's
// root has no step up; nor has a cgroup delegated to the launcher (its
// parent is the manager's: EnterDelegatedLeaf readies it instead).
func Base(h Hierarchy) string {
	if !h.V2() || h.Path == "/" {
		return h.Path
	}
	dir := h.Dir(h.Path)
	if Delegated(dir) {
		return h.Path
	}
	have, err1 := Fields(dir, "cgroup.controllers")
	on, err2 := Fields(dir, "cgroup.subtree_control")
	if err1 != nil || err2 != nil {
		return h.Path
	}
	if len(have) == 0 {
		// Nothing to hand down, as in a level's leaf on a hybrid host's
		// cgroup2: beside it too, if the parent is as free as a level's
		// root (no process in it), where nested levels belong.
		// A parent not ours to write (a user's delegated cgroup's) is no
		// place for them.
		if procs, err := Fields(filepath.Dir(dir), "cgroup.procs"); err == nil && len(procs) == 0 && unix.Access(filepath.Dir(dir), unix.W_OK) == nil {
			return path.Dir(h.Path)
		}
		return h.Path
	}
	for _, c := range have {
		if !slices.Contains(on, c) {
			return path.Dir(h.Path)
		}
	}
	return h.Path
}

// Create makes PARENT/NAME and PARENT/NAME/level in every hierarchy, where
// PARENT is the process's cgroup joined with parent (relative), and writes
// the planned limits to the outer cgroup, then mirrors them on the inner
// one. On error everything it made is removed again.
//
// With self set (exec in place), that process is moved into the inner
// cgroups before controllers are enabled, and levels are never placed
// beside the launcher's cgroup: the launcher leaves it instead.
func Create(hs []Hierarchy, parent, name string, writes []Write, self int) (_ *Level, err error) {
	l := &Level{}
	defer func() {
		if err != nil {
			if rerr := l.Remove(); rerr != nil {
				err = fmt.Errorf("%w (and undoing it: %v)", err, rerr)
			}
		}
	}()
	for i, h := range hs {
		d := &Dirs{Hierarchy: h}
		d.Parent, d.Outer = outerOf(h, parent, name, self)
		d.Inner = filepath.Join(d.Outer, InnerName)
		l.Dirs = append(l.Dirs, d)
		if err := d.create(writesFor(writes, i), self); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// outerOf is where Create makes a level's outer cgroup in h, and its parent.
func outerOf(h Hierarchy, parent, name string, self int) (string, string) {
	base := Base(h)
	if self != 0 {
		base = h.Path
	}
	p := h.Dir(path.Join(base, parent))
	return p, filepath.Join(p, name)
}

// Outers are the outer cgroups Create would make, by hierarchy name: a
// start records them before it makes them, so that gc finds what a start
// killed half-way made.
func Outers(hs []Hierarchy, parent, name string, self int) map[string]string {
	out := map[string]string{}
	for _, h := range hs {
		_, o := outerOf(h, parent, name, self)
		out[h.Name()] = o
	}
	return out
}

func writesFor(ws []Write, i int) []Write {
	var out []Write
	for _, w := range ws {
		if w.Hierarchy == i {
			out = append(out, w)
		}
	}
	return out
}

func (d *Dirs) create(ws []Write, self int) error {
	created, err := mkdirParents(d.Parent)
	d.made = created
	if err != nil {
		return err
	}
	for _, dir := range created {
		if err := d.prepare(dir); err != nil {
			return err
		}
	}
	if d.V2() && self == 0 {
		if err := d.enableFor(ws, created); err != nil {
			return err
		}
	}
	if err := d.mkdir(d.Outer); err != nil {
		return err
	}
	if self != 0 {
		// Exec in place: move in first. The launcher then leaves its own
		// cgroup empty, so controllers can be enabled there for the level
		// (the v2 no-internal-process rule), as systemd asks of a unit
		// with Delegate=yes.
		if err := d.mkdir(d.Inner); err != nil {
			return err
		}
		if err := WriteFile(d.Inner, "cgroup.procs", strconv.Itoa(self)); err != nil {
			return fmt.Errorf("join %s cgroup: %w", d.Name(), err)
		}
		if d.V2() {
			if err := d.enableFor(ws, created); err != nil {
				return err
			}
		}
	}
	if err := d.apply(d.Outer, ws); err != nil {
		return err
	}
	if d.V2() {
		// The level gets every controller its outer cgroup has, so it can
		// sub-divide; the outer cgroup holds no process, so the rule allows it.
		if err := enableAll(d.Outer); err != nil {
			return err
		}
	}
	if self == 0 {
		if err := d.mkdir(d.Inner); err != nil {
			return tooSmall(ws, err)
		}
	}
	return d.apply(d.Inner, ws)
}

// mkdir makes one of the level's own cgroups and readies it.
func (d *Dirs) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) && dir == d.Outer {
			return &ExistsError{Path: d.Outer}
		}
		if l := limitError(d.Mount, dir, err); l != nil && d.V2() {
			return l
		}
		return fmt.Errorf("create cgroup %s: %w", dir, unwrapPath(err))
	}
	d.made = append(d.made, dir)
	return d.prepare(dir)
}

// parentMark tags a --cgroup-parent directory cl-unshare made, so that
// whichever level ends last removes it, and one made by someone else is
// never touched. kernfs keeps trusted.* xattrs in v1 and v2 alike.
const parentMark = "trusted.cl-unshare"

// removeParents removes, bottom up, the empty parent cgroups that a
// cl-unshare made (this one, or another whose levels shared them), up to
// the launcher's own cgroup. A parent still holding levels stays.
func (d *Dirs) removeParents() error {
	top := d.Dir(Base(d.Hierarchy))
	for p := d.Parent; p != top && strings.HasPrefix(p, top+"/"); p = filepath.Dir(p) {
		ours := slices.Contains(d.made, p)
		if !ours {
			if _, err := unix.Getxattr(p, parentMark, nil); err != nil {
				return nil
			}
		}
		err := unix.Rmdir(p)
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY) {
			return nil
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", p, err)
		}
	}
	return nil
}

// mkdirParents makes the missing directories of dir and returns them, top first.
func mkdirParents(dir string) ([]string, error) {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cgroup parent %s: %w", p, unwrapPath(err))
		}
		missing = append([]string{p}, missing...)
	}
	var made []string
	for _, p := range missing {
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return made, fmt.Errorf("create cgroup parent %s: %w", p, unwrapPath(err))
		} else if err == nil {
			made = append(made, p)
			// Best effort: without the mark only its maker removes it.
			_ = unix.Setxattr(p, parentMark, []byte("parent"), 0)
		}
	}
	return made, nil
}

// prepare makes a fresh v1 cpuset cgroup joinable: its cpus and mems start
// empty and a task can't enter until they are copied from the parent. A
// parent made a moment ago by a concurrent cl-unshare may still be empty
// too, so it is readied first, up to the first cgroup that is ready.
func (d *Dirs) prepare(dir string) error {
	if d.V2() || !d.Has("cpuset") {
		return nil
	}
	unbalance(d.Mount, dir)
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if err := readyCpuset(dir, f, d.Mount); err != nil {
			return err
		}
	}
	return nil
}

// unbalance turns off cpuset.sched_load_balance in a fresh v1 cpuset
// whose hierarchy root balances. Writing cpus to a cpuset that balances,
// and removing one, rebuilds the scheduler domains, at a cost that grows
// with every cpuset and task on the host (every level's); while the root
// balances all its CPUs as one domain, no descendant's flag changes the
// domains (Documentation/admin-guide/cgroup-v1/cpusets.rst, 1.7), so the
// rebuilds are for nothing. Where the root does not balance (an admin's
// partitioning, or inside a level, whose root is such a cpuset), the
// flag is left as the kernel made it. Best effort: it changes no limit.
func unbalance(root, dir string) {
	if v, err := ReadFile(dir, "cpuset.cpus"); err != nil || v != "" {
		return // not fresh: changing the flag now would rebuild them
	}
	if v, err := ReadFile(root, "cpuset.sched_load_balance"); err == nil && v == "1" {
		_ = WriteFile(dir, "cpuset.sched_load_balance", "0")
	}
}

func readyCpuset(dir, f, top string) error {
	v, err := ReadFile(dir, f)
	if err != nil || v != "" || dir == top || !strings.HasPrefix(dir, top+"/") {
		return nil
	}
	up := filepath.Dir(dir)
	if err := readyCpuset(up, f, top); err != nil {
		return err
	}
	if v, err = ReadFile(up, f); err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(up, f), unwrapPath(err))
	}
	return WriteFile(dir, f, v)
}

// apply writes the limits to dir; a refusal says what this host takes.
func (d *Dirs) apply(dir string, ws []Write) error {
	for _, w := range ws {
		err := WriteFile(dir, w.File, w.Value)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.ENOENT):
			return fmt.Errorf("%s: %s (write %q: %w)", w.Field, Missing(d.Hierarchy, dir, w.File), w.Value, unwrapAll(err))
		case w.File == "cpuset.cpus" || w.File == "cpuset.mems":
			return fmt.Errorf("%s: %s %q are not all available to the level (%v): %s", w.Field,
				map[string]string{"cpuset.cpus": "CPUs", "cpuset.mems": "memory nodes"}[w.File], w.Value, unwrapAll(err), d.cpusetOffer(w.File))
		}
		return tooSmall(ws, fmt.Errorf("%s: %w", w.Field, err))
	}
	return nil
}

// cpusetOffer says which CPUs or memory nodes the level's parent has.
func (d *Dirs) cpusetOffer(file string) string {
	eff := file + ".effective" // cgroup2, and v1 with cpuset_v2_mode
	if !d.V2() {
		eff = map[string]string{"cpuset.cpus": "cpuset.effective_cpus", "cpuset.mems": "cpuset.effective_mems"}[file]
	}
	v, err := ReadFile(d.Parent, eff)
	if err != nil {
		return fmt.Sprintf("its parent cgroup is %s", d.Parent)
	}
	return fmt.Sprintf("its parent cgroup %s has %s (%s)", d.Parent, v, eff)
}

// tooSmall explains ENOMEM (or EBUSY) while a memory limit is set: the
// kernel needs some memory of the level's to make and fill its cgroups.
func tooSmall(ws []Write, err error) error {
	if !errors.Is(err, unix.ENOMEM) && !errors.Is(err, unix.EBUSY) {
		return err
	}
	for _, w := range ws {
		if w.Controller == "memory" {
			return fmt.Errorf("%s: %s bytes is below what the level needs to start (%v); give it at least a few MiB", w.Field, w.Value, unwrapAll(err))
		}
	}
	return err
}

// unwrapAll is the innermost error: the errno, for a message that has
// said the rest already.
func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// enableFor enables, down to the outer cgroup's parent, the v2 controllers
// the limits need. In cgroups we made we enable all that is offered; in a
// pre-existing parent only what a limit needs, and that is undone on Remove.
func (d *Dirs) enableFor(ws []Write, created []string) error {
	top := d.Parent
	if len(created) > 0 {
		top = filepath.Dir(created[0])
	}
	for _, w := range ws {
		if w.Controller == "cgroup" {
			continue
		}
		on, err := Fields(top, "cgroup.subtree_control")
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(top, "cgroup.subtree_control"), err)
		}
		if slices.Contains(on, w.Controller) {
			continue
		}
		if err := enable(top, w.Controller); err != nil {
			return fmt.Errorf("%s: %w", w.Field, err)
		}
		d.enable = append(d.enable, w.Controller)
	}
	for _, dir := range created {
		if err := enableAll(dir); err != nil {
			return err
		}
	}
	return nil
}

func enable(dir, c string) error {
	have, err := Fields(dir, "cgroup.controllers")
	if err == nil && !slices.Contains(have, c) {
		up := filepath.Dir(dir)
		// The root cgroup (no cgroup.type) is exempt from the rule.
		_, err := os.Stat(filepath.Join(up, "cgroup.type"))
		if pids, _ := Fields(up, "cgroup.procs"); len(pids) > 0 && err == nil {
			return fmt.Errorf("the %s controller is not offered to cgroup %s: its parent %s holds processes, so it cannot enable it (cgroup v2 no-internal-process rule); run cl-unshare in a cgroup that offers %s, such as a unit with Delegate=yes, or use Config.CgroupParent", c, dir, up, c)
		}
		return fmt.Errorf("the %s controller is not offered to cgroup %s: enable it in %s/cgroup.subtree_control, or use Config.CgroupParent", c, dir, up)
	}
	if err := WriteFile(dir, "cgroup.subtree_control", "+"+c); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w: %s", err, NoInternalProcessHint)
		}
		return err
	}
	return nil
}

func enableAll(dir string) error {
	have, err := Fields(dir, "cgroup.controllers")
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(dir, "cgroup.controllers"), err)
	}
	for _, c := range have {
		if err := enable(dir, c); err != nil {
			return err
		}
	}
	return nil
}

// V2 returns the level's unified-hierarchy cgroups, or nil on a legacy host.
func (l *Level) V2() *Dirs {
	for _, d := range l.Dirs {
		if d.V2() {
			return d
		}
	}
	return nil
}

// AddLeaf makes the cgroup2 leaf Inner/name, where the level's processes
// start, so that its namespace root holds none and can hand controllers
// down (the no-internal-process rule exempts only a real root). v1
// hierarchies have no such rule and get none.
func (l *Level) AddLeaf(name string) error {
	d := l.V2()
	if d == nil {
		return nil
	}
	leaf := filepath.Join(d.Inner, name)
	if err := d.mkdir(leaf); err != nil {
		return err
	}
	d.Leaf = leaf
	return nil
}

// EnableAll enables for dir's children every controller dir has.
func EnableAll(dir string) error { return enableAll(dir) }

// Join moves pid into the inner cgroup of every hierarchy (skipping v2 when
// the process was already cloned into it).
func (l *Level) Join(pid int, skipV2 bool) error {
	for _, d := range l.Dirs {
		if d.V2() && skipV2 {
			continue
		}
		if err := WriteFile(d.Inner, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("join %s cgroup: %w", d.Name(), err)
		}
	}
	return nil
}

// Remove removes, deepest first, every cgroup Create made, and switches off
// the controllers it enabled in a parent it did not make once no sibling
// cgroup is left there. Cgroups must be empty; a few retries cover the
// moment between a process's death and the kernel letting go of its cgroup.
func (l *Level) Remove() error {
	var errs []error
	for i := len(l.Dirs) - 1; i >= 0; i-- {
		d := l.Dirs[i]
		for j := len(d.made) - 1; j >= 0; j-- {
			if dir := d.made[j]; dir == d.Outer || dir == d.Inner {
				if err := rmdirTree(dir); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := d.removeParents(); err != nil {
			errs = append(errs, err)
		}
		d.made = nil
		if len(d.enable) > 0 && !hasChildren(d.Parent) {
			for _, c := range d.enable {
				_ = WriteFile(d.Parent, "cgroup.subtree_control", "-"+c)
			}
		}
		d.enable = nil
	}
	return errors.Join(errs...)
}

// rmdirTree removes dir and the cgroups below it (the ones the level made
// for itself), deepest first. cgroupfs has no symlinks to follow.
func rmdirTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove cgroup %s: %w", dir, unwrapPath(err))
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return rmdir(dir)
}

func rmdir(dir string) error {
	var err error
	for delay := time.Millisecond; delay < time.Second; delay *= 2 {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(delay)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

func hasChildren(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range ents {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// Procs lists every process in dir and its descendants.
func Procs(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			if gone(err) {
				return nil // a child cgroup removed while we walk
			}
			return err
		}
		if !e.IsDir() {
			return nil
		}
		s, err := ReadFile(p, "cgroup.procs")
		if err != nil {
			if gone(err) {
				return nil
			}
			return err
		}
		for _, f := range strings.Fields(s) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids, err
}
