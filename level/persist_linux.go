package level

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"

	"golang.org/x/sys/unix"
)

// persist binds each namespace cfg.Persist names, of the init stage
// pid (asked once it has them all, before CMD runs, which may end at
// once), on its file, as unshare --net=FILE does; each has its undo. The
// record has them before anyone can see the level, so a gc after a crash
// finds them.
func (l *Level) persist(cfg Config, pid int) error {
	for _, kind := range slices.Sorted(maps.Keys(cfg.Persist)) {
		p := PersistedNS{Kind: kind, Path: cfg.Persist[kind]}
		ns := kind
		if kind == "time" {
			ns = "time_for_children" // the stage's own is the host's until its execve
		}
		src := fmt.Sprintf("/proc/%d/ns/%s", pid, ns)
		var st unix.Stat_t
		if err := unix.Stat(src, &st); err != nil {
			return fmt.Errorf("keep the %s namespace: %s: %w", kind, src, err)
		}
		p.Inode = st.Ino
		// The file is held open from here, and mounted on and checked by
		// its fd: no path swapped meanwhile is ever followed.
		fd, err := unix.Open(p.Path, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
		switch {
		case err == nil:
			p.Created = true
		case errors.Is(err, unix.EEXIST):
			fd, err = unix.Open(p.Path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return fmt.Errorf("keep the %s namespace: open %s: %w", kind, p.Path, err)
		}
		var file unix.Stat_t
		if err := unix.Fstat(fd, &file); err != nil || file.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return fmt.Errorf("keep the %s namespace: %s is no longer a regular file", kind, p.Path)
		}
		p.FileInode, p.FileCtime = file.Ino, file.Ctim.Nano()
		err = unix.Mount(src, fmt.Sprintf("/proc/self/fd/%d", fd), "", unix.MS_BIND, "")
		unix.Close(fd)
		if err != nil {
			if p.Created {
				_ = removeCreated(p)
			}
			return fmt.Errorf("keep the %s namespace: bind it on %s: %w", kind, p.Path, err)
		}
		l.state.Persist = append(l.state.Persist, p)
		l.undo = append(l.undo, func() error { return unpersist(p) })
		if err := failpoint.At("keep " + kind); err != nil {
			return err
		}
	}
	return nil
}

// unpersist unmounts p where its file still holds the level's namespace
// (nsfs, that inode: never a mount someone made there since), and
// removes the file if cl-unshare made it.
func unpersist(p PersistedNS) error {
	fd, err := unix.Open(p.Path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		var st unix.Stat_t
		var fs unix.Statfs_t
		if unix.Fstat(fd, &st) == nil && unix.Fstatfs(fd, &fs) == nil && fs.Type == unix.NSFS_MAGIC && st.Ino == p.Inode {
			err = unix.Unmount(fmt.Sprintf("/proc/self/fd/%d", fd), unix.MNT_DETACH)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("unmount the %s namespace kept on %s: %w", p.Kind, p.Path, err)
		}
	}
	if p.Created {
		return removeCreated(p)
	}
	return nil
}

// removeCreated removes the file cl-unshare made for p, if that file is
// still there, unmounted: a regular file with the inode and change time
// recorded when it was made (an inode number alone is soon reused).
func removeCreated(p PersistedNS) error {
	var st unix.Stat_t
	if unix.Lstat(p.Path, &st) != nil || st.Ino != p.FileInode || st.Ctim.Nano() != p.FileCtime ||
		st.Mode&unix.S_IFMT != unix.S_IFREG || mounted(p.Path) {
		return nil // gone, replaced or covered: not ours to remove
	}
	if err := os.Remove(p.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p.Path, err)
	}
	return nil
}
