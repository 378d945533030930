package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Adopt rebuilds a level's cgroups from recorded outer directories (keyed
// by hierarchy name, as Hierarchy.Name gives them), for a process that did
// not create them: management commands and gc. A directory that is not a
// cgroup of the named kind is refused, so a bad record cannot make us kill
// or remove anything else.
func Adopt(outer map[string]string) (*Level, error) {
	l := &Level{}
	for name, dir := range outer {
		var h Hierarchy
		if name != "cgroup2" {
			h.ID = 1
			h.Controllers = strings.Split(name, ",")
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone already
			}
			return nil, fmt.Errorf("cgroup %s: %w", dir, err)
		}
		want := int64(unix.CGROUP_SUPER_MAGIC)
		if h.V2() {
			want = unix.CGROUP2_SUPER_MAGIC
		}
		if int64(st.Type) != want || !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("%s is not a %s cgroup", dir, name)
		}
		l.Dirs = append(l.Dirs, &Dirs{Hierarchy: h, Parent: filepath.Dir(dir), Outer: dir,
			Inner: filepath.Join(dir, InnerName), made: []string{dir}})
	}
	return l, nil
}

// RemoveAdopted removes an adopted level's cgroups, and the parents a
// cl-unshare made (marked) that are now empty.
func (l *Level) RemoveAdopted() error {
	var errs []error
	for _, d := range l.Dirs {
		if err := rmdirTree(d.Outer); err != nil {
			errs = append(errs, err)
			continue
		}
		for p := d.Parent; p != "/" && p != "."; p = filepath.Dir(p) {
			if _, err := unix.Getxattr(p, parentMark, nil); err != nil {
				break
			}
			if unix.Rmdir(p) != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveOuter removes an adopted level's outer cgroups and all below
// them, and nothing above.
func (l *Level) RemoveOuter() error {
	var errs []error
	for _, d := range l.Dirs {
		if err := rmdirTree(d.Outer); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// maxOOMWalk bounds the v1 memory cgroups OOMKills reads below a level,
// as the management commands bound the nested records they read.
const maxOOMWalk = 4096

// OOMKills is how many processes the kernel killed for lack of memory in
// the level: cgroup2's memory.events counts below the outer cgroup too;
// v1's memory.oom_control counts only the cgroup's own, so every cgroup
// of the level is added up. 0 where it cannot tell.
func (l *Level) OOMKills() int {
	n := 0
	for _, d := range l.Dirs {
		switch {
		case d.V2():
			// memory.events counts the cgroup's descendants too.
			if v, err := KeyValue(d.Outer, "memory.events", "oom_kill"); err == nil {
				k, _ := strconv.Atoi(v)
				n += k
			}
		case d.Has("memory"):
			// v1 counts a kill in the victim's own cgroup only: the
			// level's inner one, or any it made below, of which the first
			// maxOOMWalk are read (the level decides how many there are).
			seen := 0
			_ = filepath.WalkDir(d.Outer, func(p string, e fs.DirEntry, err error) error {
				if err != nil || !e.IsDir() {
					return nil
				}
				if seen++; seen > maxOOMWalk {
					return filepath.SkipAll
				}
				if v, err := KeyValue(p, "memory.oom_control", "oom_kill"); err == nil {
					k, _ := strconv.Atoi(v)
					n += k
				}
				return nil
			})
		}
	}
	return n
}

// Frozen reports whether the level's inner cgroup is frozen (cgroup v2
// cgroup.events, or the v1 freezer).
func (l *Level) Frozen() bool {
	if d := l.V2(); d != nil {
		v, err := KeyValue(d.Inner, "cgroup.events", "frozen")
		return err == nil && v == "1"
	}
	for _, d := range l.Dirs {
		if d.Has("freezer") {
			v, _ := ReadFile(d.Inner, "freezer.state")
			return v == "FROZEN"
		}
	}
	return false
}

// Freeze freezes (or thaws) the inner cgroup and everything below it, and
// waits until the kernel reports it done.
func (l *Level) Freeze(freeze bool) error {
	f, dir := v2Freezer, ""
	if d := l.V2(); d != nil {
		dir = d.Inner
	} else {
		for _, d := range l.Dirs {
			if d.Has("freezer") {
				f, dir = v1Freezer, d.Inner
			}
		}
	}
	if dir == "" {
		return errors.New("no freezer here: neither cgroup v2 nor the v1 freezer hierarchy is mounted")
	}
	value := f.thaw
	if freeze {
		value = f.freeze
	}
	return waitFor(func() (bool, error) {
		// v1 may stay FREEZING while a task is busy; writing again retries.
		if err := WriteFile(dir, f.file, value); err != nil {
			return false, err
		}
		return l.Frozen() == freeze, nil
	})
}

// Signal sends sig to every process of the level.
func (l *Level) Signal(sig unix.Signal) (int, error) {
	pids, err := Procs(l.Dirs[0].Inner)
	if d := l.V2(); d != nil {
		pids, err = Procs(d.Inner)
	}
	for _, p := range pids {
		_ = unix.Kill(p, sig)
	}
	return len(pids), err
}
