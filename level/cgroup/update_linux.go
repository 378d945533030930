package cgroup

import (
	"fmt"
)

// Update writes new limits to a running level's outer cgroups and their
// mirror on the inner ones, as Create does at the start. On cgroup2 the
// controllers it can have are those its outer cgroup offers. A cpuset
// that shrinks must shrink inside first (v1 keeps a child within its
// parent), one that grows outside first: where one order is refused the
// other is tried.
func (l *Level) Update(lim Limits) ([]Write, error) {
	hs := make([]Hierarchy, len(l.Dirs))
	var v2 []string
	for i, d := range l.Dirs {
		hs[i] = d.Hierarchy
		if d.V2() {
			var err error
			if v2, err = Fields(d.Outer, "cgroup.controllers"); err != nil {
				return nil, fmt.Errorf("cgroup %s: %w", d.Outer, unwrapPath(err))
			}
		}
	}
	writes, err := Plan(lim, hs, v2)
	if err != nil {
		return nil, err
	}
	for i, d := range l.Dirs {
		ws := writesFor(writes, i)
		if len(ws) == 0 {
			continue
		}
		if err := d.apply(d.Outer, ws); err == nil {
			err = d.apply(d.Inner, ws)
			if err != nil {
				return nil, err
			}
		} else if ierr := d.apply(d.Inner, ws); ierr != nil || d.apply(d.Outer, ws) != nil {
			return nil, err
		}
	}
	return writes, nil
}
