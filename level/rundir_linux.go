package level

import (
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// trustRunDir refuses a run directory that a user other than the caller
// (and root) could write, or replace by renaming a directory above it.
// Its records are believed: they name the cgroups kill signals and gc
// removes, and the ids exec runs CMD as. One a user could write would
// let them steer root there: a forged record, or a level of theirs that
// names host uid 0 as its root, so root's exec into it would run CMD,
// which the level's mounts resolve, as uid 0. So every directory from /
// down to it must belong to root or the caller and be writable by no one
// else, unless sticky (as /tmp is). Only a caller in the host's user
// namespace checks: in a level's, the host's directories show as owned
// by nobody, and the walker checks nested records against their parents.
func trustRunDir(dir string) error {
	if !initialUserNS() {
		return nil
	}
	p := filepath.Clean(dir)
	for { // the directories still to be made are the caller's own
		if _, err := os.Lstat(p); err == nil || p == "/" {
			break
		}
		p = filepath.Dir(p)
	}
	p, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil // gone meanwhile: whatever uses it fails, and says so
	}
	euid := os.Geteuid()
	for {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return fieldErr("Config.RunDir", "%s: %v", p, unwrapPath(err))
		}
		if uid := int(st.Uid); uid != 0 && uid != euid {
			return fieldErr("Config.RunDir", "%s belongs to uid %d, who could forge the records in %s; %s", p, uid, dir, askOwner(uid))
		}
		if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
			return fieldErr("Config.RunDir", "%s is writable by others (mode %04o), who could forge the records in %s; use a run directory only you can write, or chmod go-w %s", p, st.Mode&0o7777, dir, p)
		}
		if p == "/" {
			return nil
		}
		p = filepath.Dir(p)
	}
}

// askOwner says what root does instead of acting on a run directory of
// user uid's: the user's levels are theirs to manage.
func askOwner(uid int) string {
	if os.Geteuid() != 0 {
		return "use a run directory only you and root can write"
	}
	name := strconv.Itoa(uid)
	if u, err := osuser.LookupId(name); err == nil {
		name = u.Username
	}
	return "root acts on no level recorded there: run the command as that user (runuser -u " + name + " -- cl-unshare ...)"
}
