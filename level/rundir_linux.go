package level

import (
	"errors"
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"

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
	return trustPath(filepath.Clean(dir), filepath.Clean(dir), 0)
}

// trustPath checks p as the kernel walks it, for run directory dir:
// every entry from / down, a link too (whose target is walked the same
// way, with what follows it), where a directory still to be made ends
// the walk: the caller makes it, and claimState checks again once it
// is there. Any error refuses: nothing is trusted that was not seen.
func trustPath(dir, p string, links int) error {
	if links > 16 {
		return fieldErr("Config.RunDir", "%s: too many levels of symbolic links", dir)
	}
	euid := os.Geteuid()
	parts := strings.Split(p, "/")
	cur := "/"
	for i := 0; i < len(parts); i++ {
		if parts[i] == "" && i > 0 {
			continue
		}
		next := filepath.Join(cur, parts[i])
		var st unix.Stat_t
		err := unix.Lstat(next, &st)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fieldErr("Config.RunDir", "%s: %v", next, err)
		}
		if uid := int(st.Uid); uid != 0 && uid != euid {
			return fieldErr("Config.RunDir", "%s belongs to uid %d, who could forge the records in %s; %s", next, uid, dir, askOwner(uid))
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, err := os.Readlink(next)
			if err != nil {
				return fieldErr("Config.RunDir", "%s: %v", next, unwrapPath(err))
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			return trustPath(dir, filepath.Join(append([]string{target}, parts[i+1:]...)...), links+1)
		}
		// Sticky (as /tmp is) lets no one else replace what is in it,
		// but lets anyone make entries: fine above the run directory,
		// not for it.
		last := i == len(parts)-1
		if st.Mode&0o022 != 0 && (st.Mode&unix.S_ISVTX == 0 || last) {
			return fieldErr("Config.RunDir", "%s is writable by others (mode %04o), who could forge the records in %s; use a run directory only you can write, or chmod go-w %s", next, st.Mode&0o7777, dir, next)
		}
		cur = next
	}
	return nil
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
