package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Error is a failed mount syscall, with everything needed to say which.
type Error struct {
	Op     string
	Source string
	Target string
	Err    error
}

func (e *Error) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("%s %s on %s: %v", e.Op, e.Source, e.Target, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Op, e.Target, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func mount(op, source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return &Error{Op: op, Source: source, Target: target, Err: err}
	}
	return nil
}

// Current reads this thread's mount table: /proc/thread-self, as
// mountinfo.GetMounts reads it, not /proc/self, since after
// unshare(CLONE_NEWNS) on one thread the thread-group leader may still be
// in the old namespace.
func Current() ([]*mountinfo.Info, error) { return mountinfo.GetMounts(nil) }

// MountTmpfs mounts a small tmpfs at dir.
func MountTmpfs(dir string) error {
	return mount("mount tmpfs", "cl-unshare", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755,"+TmpfsBounds)
}

// TmpfsBounds are the size and inode bounds of every tmpfs cl-unshare
// mounts: a run directory, a layout's root. Inodes are bounded too: empty
// files and directories take no blocks.
const TmpfsBounds = "size=64k,nr_inodes=4096"

// TmpfsMaxInodes is TmpfsBounds' nr_inodes.
const TmpfsMaxInodes = 4096

// LayoutRootData is how a layout's root tmpfs is mounted: it holds only
// mount points and symlinks.
const LayoutRootData = "mode=755," + TmpfsBounds

// MountLayoutRoot mounts the tmpfs a level's /sys/fs/cgroup starts as.
func MountLayoutRoot(dir string) error {
	return mount("mount tmpfs", "cl-unshare", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, LayoutRootData)
}

// MakeShared puts the mount at dir in a peer group of its own (or keeps its
// group if it has one).
func MakeShared(dir string) error {
	return mount("make shared", "", dir, "", unix.MS_SHARED, "")
}

// MakePrivate takes the mount at dir out of any peer group.
func MakePrivate(dir string) error {
	return mount("make private", "", dir, "", unix.MS_PRIVATE, "")
}

// SlaveAll makes every mount of this namespace a slave: host mounts still
// arrive, nothing made here goes back.
func SlaveAll() error {
	return mount("make rslave", "", "/", "", unix.MS_REC|unix.MS_SLAVE, "")
}

// SharedAll makes every mount of this namespace shared, as unshare
// --propagation shared: a slave stays one (host mounts still arrive) and
// joins a new peer group that mount namespaces copied from this one
// share; nothing reaches the host.
func SharedAll() error {
	return mount("make rshared", "", "/", "", unix.MS_REC|unix.MS_SHARED, "")
}

// PrivateAll makes every mount of this namespace private: nothing comes
// in from the host or goes out.
func PrivateAll() error {
	return mount("make rprivate", "", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
}

// JoinGroup makes the private mount at dir a peer of the mount open as fd
// (an O_PATH fd, possibly of another mount namespace). Linux 5.15.
func JoinGroup(fd int, dir string) error {
	err := unix.MoveMount(fd, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_SET_GROUP)
	if err != nil {
		return &Error{Op: "join peer group of", Target: dir, Err: err}
	}
	return nil
}

// Attach mounts the detached mount open as fd (fsmount, open_tree) at dir.
func Attach(fd int, dir string) error {
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &Error{Op: "attach mount on", Target: dir, Err: err}
	}
	return nil
}

// Clone returns a detached copy of the mount at dir (not of those below
// it), in dir's peer group if dir is shared: attached in another mount
// namespace, what is mounted on either copy reaches the other.
func Clone(dir string) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, &Error{Op: "clone mount", Target: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), "clone of "+dir), nil
}

// AttachPrivate attaches the detached mount f at dir, in no peer group.
func AttachPrivate(f *os.File, dir string) error {
	attr := unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if err := unix.MountSetattr(int(f.Fd()), "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return &Error{Op: "make private", Target: dir, Err: err}
	}
	return Attach(int(f.Fd()), dir)
}

// Move moves the mount at from to to.
func Move(from, to string) error {
	return mount("move mount", from, to, "", unix.MS_MOVE, "")
}

// BindTree bind-mounts src and everything below it at dst. A shared src
// makes dst its peer, which is how a level's /sys/fs/cgroup stays mirrored.
func BindTree(src, dst string) error {
	return mount("bind", src, dst, "", unix.MS_BIND|unix.MS_REC, "")
}

// PivotRoot makes dir (a mount) this mount namespace's root and this
// process's, and unmounts the old root with all below it. The old root
// is made a slave first: detaching the level's own copies of its mirror
// there must not unmount their peers on the host.
func PivotRoot(dir string) error {
	old, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "open", Target: "/", Err: err}
	}
	defer unix.Close(old)
	if err := unix.Chdir(dir); err != nil {
		return &Error{Op: "chdir", Target: dir, Err: err}
	}
	// pivot_root(".", ".") stacks the old root on the new one, with no
	// directory for it needed in dir (which may be read-only).
	if err := unix.PivotRoot(".", "."); err != nil {
		return &Error{Op: "pivot_root", Target: dir, Err: err}
	}
	if err := unix.Fchdir(old); err != nil {
		return &Error{Op: "fchdir", Target: "the old root", Err: err}
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return &Error{Op: "make rslave", Target: "the old root", Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &Error{Op: "unmount", Target: "the old root", Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return &Error{Op: "chdir", Target: "/", Err: err}
	}
	return nil
}

// Detach lazily unmounts dir and every mount below it.
func Detach(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return &Error{Op: "unmount", Target: dir, Err: err}
	}
	return nil
}

// DetachMatching detaches, deepest first, every mount for which keep is
// false. Mounts already gone with a parent's detach are skipped.
func DetachMatching(infos []*mountinfo.Info, drop func(*mountinfo.Info) bool) error {
	var dirs []string
	for _, m := range infos {
		if drop(m) {
			dirs = append(dirs, m.Mountpoint)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		err := Detach(d)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

// Build mounts a fresh copy of layout at dir, which is a tmpfs (see
// MountLayoutRoot): where the layout's root is a tmpfs, dir is that root.
// Called inside a new cgroup namespace, every cgroupfs is rooted at that
// namespace's root. The caller undoes a failure by detaching dir.
func Build(l Layout, dir string) error {
	for _, fs := range l.FS {
		if fs.Dir == "" && fs.Type == "tmpfs" {
			continue
		}
		target := filepath.Join(dir, fs.Dir)
		if fs.Dir != "" {
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		}
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := mount("mount "+fs.Type, fs.Type, target, fs.Type, flags, fs.Data); err != nil {
			return err
		}
	}
	for _, s := range l.Symlinks {
		if err := os.Symlink(s.Target, filepath.Join(dir, s.Name)); err != nil {
			return err
		}
	}
	return nil
}

// ReadSymlinks lists the symlinks directly in dir (cpu -> cpu,cpuacct).
func ReadSymlinks(dir string) ([]Symlink, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Symlink
	for _, e := range ents {
		if e.Type()&os.ModeSymlink == 0 {
			continue
		}
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Symlink{Name: e.Name(), Target: t})
	}
	return out, nil
}
