package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SupervisorLeaf is the child of a delegated cgroup that a launcher moves
// itself into, so that the delegated cgroup holds no process and may hand
// its controllers down to levels (the v2 no-internal-process rule).
const SupervisorLeaf = "supervisor"

// Delegated reports whether a service manager delegated cgroup dir to
// the processes in it: systemd marks the cgroup of a unit with
// Delegate=yes with the trusted.delegate xattr (and user.delegate, which
// an unprivileged reader may see), value "1". For a caller who is not
// root, a cgroup delegated the way the kernel documents it (the directory
// and its delegation files chowned to the caller) counts too.
func Delegated(dir string) bool {
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		b := make([]byte, 8)
		if n, err := unix.Getxattr(dir, attr, b); err == nil && string(b[:n]) == "1" {
			return true
		}
	}
	euid := os.Geteuid()
	return euid != 0 && OwnedBy(dir, euid)
}

// OwnedBy reports whether cgroup dir and its delegation files (those the
// kernel lists in /sys/kernel/cgroup/delegate) belong to uid: what
// delegating a cgroup to a user is (cgroup-v2.rst, "Delegation").
func OwnedBy(dir string, uid int) bool {
	files := []string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control"}
	if b, err := os.ReadFile("/sys/kernel/cgroup/delegate"); err == nil {
		files = strings.Fields(string(b))
	}
	for i, f := range append([]string{""}, files...) {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, f), &st); err != nil {
			if i > 0 && errors.Is(err, unix.ENOENT) {
				continue // a file of a controller this cgroup lacks
			}
			return false
		}
		if int(st.Uid) != uid {
			return false
		}
	}
	return true
}

// EnterDelegatedLeaf readies a delegated cgroup2 cgroup that holds the
// launcher (pid) alone, as in `systemd-run --scope -p Delegate=yes
// cl-unshare ...`: the launcher moves into its SupervisorLeaf child and
// every controller the cgroup has is enabled for its children, so levels
// go below the delegated cgroup (Base) rather than beside it, outside
// what the manager delegated. It reports whether it moved. A cgroup that
// already hands every controller down, is not delegated, or holds other
// processes too is left as it is.
func EnterDelegatedLeaf(h Hierarchy, pid int) (bool, error) {
	if !h.V2() || h.Path == "/" {
		return false, nil
	}
	dir := h.Dir(h.Path)
	have, err1 := Fields(dir, "cgroup.controllers")
	on, err2 := Fields(dir, "cgroup.subtree_control")
	if err1 != nil || err2 != nil || !Delegated(dir) {
		return false, nil
	}
	if !slices.ContainsFunc(have, func(c string) bool { return !slices.Contains(on, c) }) {
		return false, nil
	}
	procs, err := Fields(dir, "cgroup.procs")
	if err != nil || !slices.Equal(procs, []string{strconv.Itoa(pid)}) {
		return false, nil
	}
	leaf := filepath.Join(dir, SupervisorLeaf)
	made := true
	if err := os.Mkdir(leaf, 0o755); errors.Is(err, os.ErrExist) {
		made = false
	} else if err != nil {
		return false, fmt.Errorf("delegated cgroup %s: make the supervisor's leaf: %w", dir, err)
	}
	var enabled []string
	// undo leaves the cgroup as it was: the controllers this enabled off
	// again (the rule would refuse the move back otherwise), the launcher
	// back in it, and the leaf gone if this made it.
	undo := func(err error) (bool, error) {
		for _, c := range slices.Backward(enabled) {
			_ = WriteFile(dir, "cgroup.subtree_control", "-"+c)
		}
		_ = WriteFile(dir, "cgroup.procs", strconv.Itoa(pid))
		if made {
			_ = os.Remove(leaf)
		}
		return false, err
	}
	if err := WriteFile(leaf, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		return undo(fmt.Errorf("delegated cgroup %s: move into %s: %w", dir, leaf, err))
	}
	for _, c := range have {
		if slices.Contains(on, c) {
			continue
		}
		if err := WriteFile(dir, "cgroup.subtree_control", "+"+c); err != nil {
			return undo(fmt.Errorf("delegated cgroup %s: enable %s for levels: %w (start the level alone in it, or use Config.CgroupParent)", dir, c, err))
		}
		enabled = append(enabled, c)
	}
	return true, nil
}
