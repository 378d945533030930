package level

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// A level's mount namespace is not a copy of the launcher's: that holds
// every other level's run directory and cgroup mounts, so a level would
// cost more, to make and to unmake, with every level already running.
// It is a copy of the template: the launcher's mounts as slaves (a mount
// made later on the host still arrives), less RUN and any cgroup
// filesystem outside /sys/fs/cgroup, made once and pinned by a bind
// mount of its nsfs file at RUN/ns/mnt-KEY. Its /sys/fs/cgroup is the
// launcher's, so the layout is read from its small mount table; a level
// drops it with one recursive unmount. RUN itself is a private mount, so
// the mounts of levels, all below it, reach no other namespace.
//
// KEY is the template's make and this binary: a new cl-unshare never
// clones from an older one's template. A template that no longer fits
// (a mount outside RUN was made or unmounted on the host since, which a
// private mount would not pass on to it, or something reached RUN) is
// made again; gc removes them when no level is left.
const templateVersion = "1"

// templateDir holds the pins and the lock that orders their making.
func templateDir(runDir string) string { return filepath.Join(runDir, "ns") }

// templateKey names this binary's template.
func templateKey() string {
	var st unix.Stat_t
	_ = unix.Stat("/proc/self/exe", &st)
	h := sha256.Sum256(fmt.Appendf(nil, "%s %d %d %d %d.%d", templateVersion, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec))
	return "mnt-" + hex.EncodeToString(h[:6])
}

// template is an open template: its nsfs file, and the lock that keeps gc
// from removing RUN's mounts until the level using it is recorded.
type template struct {
	ns   *os.File
	lock *os.File
}

func (t *template) Close() {
	if t == nil {
		return
	}
	t.ns.Close()
	t.lock.Close()
}

// openTemplate opens runDir's template for this binary, making it if
// there is none or if the host's mounts outside RUN are no longer those
// it was copied from. It holds a shared lock until Close.
func openTemplate(runDir string) (*template, error) {
	dir := templateDir(runDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	pin := filepath.Join(dir, templateKey())
	for _, how := range []int{unix.LOCK_SH, unix.LOCK_EX} {
		if err := flock(lock, how); err != nil {
			lock.Close()
			return nil, err
		}
		if ns, err := openPin(pin, runDir); err == nil {
			return downgrade(&template{ns, lock})
		}
		// None that fits: make it, under the lock held alone (and look
		// again first: another start may have made it meanwhile).
	}
	ns, err := makeTemplate(runDir, pin)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("template %s: %w", pin, err)
	}
	return downgrade(&template{ns, lock})
}

func downgrade(t *template) (*template, error) {
	if err := flock(t.lock, unix.LOCK_SH); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return fmt.Errorf("lock %s: %w", f.Name(), err)
			}
			return nil
		}
	}
}

// openPin opens a pinned template that fits: an nsfs bind mount whose
// record of the host's mounts outside RUN (pin.base) is what they are.
func openPin(pin, runDir string) (*os.File, error) {
	if !mounted(runDir) {
		return nil, os.ErrNotExist
	}
	f, err := os.OpenFile(pin, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("%s is not a pinned mount namespace", pin)
	}
	was, err := os.ReadFile(pin + ".base")
	if err == nil {
		var same bool
		if same, err = sameBase(runDir, string(was)); err == nil && !same {
			err = errors.New("the host's mounts changed")
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// baseMounts identifies the mounts of this namespace outside RUN (which
// RUN's private mount keeps the levels' under): their unique ids, which
// the kernel never reuses, so any mount or unmount since shows. Without
// listmount (before Linux 6.8) it reads them from mountinfo, whose length
// grows with the levels running.
func baseMounts(runDir string) (string, error) {
	all, err := mounts.IDs(0)
	if errors.Is(err, mounts.ErrNoListmount) {
		return baseFromMountinfo(runDir)
	}
	if err != nil {
		return "", err
	}
	run, err := mounts.UniqueID(runDir)
	if err != nil {
		return "", err
	}
	levels, err := mounts.IDs(run)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, j := 0, 0; i < len(all); i++ {
		for j < len(levels) && levels[j] < all[i] {
			j++
		}
		if all[i] != run && (j == len(levels) || levels[j] != all[i]) {
			fmt.Fprintf(&b, "%d\n", all[i])
		}
	}
	return b.String(), nil
}

// sameBase reports whether the mounts outside RUN are still those of
// was, a record baseMounts made, without listing them all as it does:
// the kernel counts a namespace's mounts, RUN's are listed (they are
// most of them, and that is one pass) and each recorded one is looked
// up. The same number, all of the old still there, is the same set.
func sameBase(runDir, was string) (bool, error) {
	total, err := mounts.Count()
	if errors.Is(err, mounts.ErrNoListmount) {
		now, err := baseFromMountinfo(runDir)
		return now == was, err
	}
	if err != nil {
		return false, err
	}
	run, err := mounts.UniqueID(runDir)
	if err != nil {
		return false, err
	}
	levels, err := mounts.IDs(run)
	if err != nil {
		return false, err
	}
	old := strings.Fields(was)
	if total-len(levels)-1 != len(old) {
		return false, nil
	}
	for _, f := range old {
		id, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return false, nil // a record of baseFromMountinfo's
		}
		if ok, err := mounts.Exists(id); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func baseFromMountinfo(runDir string) (string, error) {
	infos, err := mounts.Current()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, m := range infos {
		if !mounts.Under(m.Mountpoint, runDir) {
			fmt.Fprintf(&b, "%d %d %d:%d %s %s\n", m.ID, m.Parent, m.Major, m.Minor, m.Root, m.Mountpoint)
		}
	}
	return b.String(), nil
}

// mounted reports whether dir is a mount point.
func mounted(dir string) bool {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st)
	return err == nil && st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// makeTemplate makes RUN a mount of its own (private, where it was not a
// mount), the pin directory one that shares with nobody (a bind of an
// nsfs file must not propagate), the template, and pins it at pin with
// the record of the host's mounts it was copied from. Where the kernel
// refuses the pin (inside some user namespaces), the template is this
// start's alone.
func makeTemplate(runDir, pin string) (*os.File, error) {
	if !mounted(runDir) {
		if err := mounts.BindTree(runDir, runDir); err != nil {
			return nil, err
		}
		if err := mounts.MakePrivate(runDir); err != nil {
			return nil, err
		}
	}
	if err := privateDir(templateDir(runDir)); err != nil {
		return nil, err
	}
	_ = unix.Unmount(pin, unix.MNT_DETACH) // this key's, no longer fitting
	_ = os.Remove(pin + ".base")
	for {
		before, err := baseMounts(runDir)
		if err != nil {
			return nil, err
		}
		ns, err := trimmedNS(runDir)
		if err != nil {
			return nil, err
		}
		after, err := baseMounts(runDir)
		if err != nil || after != before {
			ns.Close()
			if err != nil {
				return nil, err
			}
			continue // the host's mounts changed while copied
		}
		if err := os.WriteFile(pin, nil, 0o600); err != nil {
			ns.Close()
			return nil, err
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", ns.Fd()), pin, "", unix.MS_BIND, ""); err != nil {
			return ns, nil // unpinned: this start's alone
		}
		if err := os.WriteFile(pin+".base", []byte(before), 0o600); err != nil {
			ns.Close()
			return nil, err
		}
		removeStalePins(runDir, pin)
		return ns, nil
	}
}

// trimmedNS makes a template on a thread of its own and returns its nsfs
// file, which keeps it once the thread is gone.
func trimmedNS(runDir string) (*os.File, error) {
	type result struct {
		ns  *os.File
		err error
	}
	done := make(chan result, 1)
	offMainThread(func() {
		err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS)
		if err == nil {
			err = trimTemplate(runDir)
		}
		var ns *os.File
		if err == nil {
			ns, err = os.Open("/proc/thread-self/ns/mnt")
		}
		done <- result{ns, err}
	})
	r := <-done
	return r.ns, r.err
}

// trimTemplate makes this thread's new mount namespace a template: every
// mount a slave, and neither RUN nor a cgroup filesystem outside
// /sys/fs/cgroup in it.
func trimTemplate(runDir string) error {
	if err := mounts.SlaveAll(); err != nil {
		return err
	}
	// Every mount at RUN that will go: a level's own bind of its run
	// directory, not the locked copy below it (in a user namespace).
	for i := 0; i < 8 && mounted(runDir); i++ {
		if unix.Unmount(runDir, unix.MNT_DETACH) != nil {
			break
		}
	}
	infos, err := mounts.Current()
	if err != nil {
		return err
	}
	return mounts.DetachMatching(infos, func(m *mountinfo.Info) bool { return !fits(m, runDir) })
}

// fits reports whether a template may hold mount m: nothing below RUN,
// nothing at RUN that shares its mounts, no cgroupfs but the layout's.
func fits(m *mountinfo.Info, runDir string) bool {
	if mounts.Under(m.Mountpoint, runDir) && (m.Mountpoint != runDir || strings.Contains(m.Optional, "shared:")) {
		return false
	}
	return m.FSType != "cgroup" && m.FSType != "cgroup2" || mounts.Under(m.Mountpoint, mounts.CgroupRoot)
}

// privateDir makes dir a mount point in no peer group: a tmpfs of its own
// where the mount it lies on is shared (RUN in a level, whose mounts
// reach the host).
func privateDir(dir string) error {
	infos, err := mountinfo.GetMounts(mountinfo.ParentsFilter(dir))
	if err != nil {
		return err
	}
	var holder *mountinfo.Info // the last mounted of the deepest
	for _, m := range infos {
		if mounts.Under(dir, m.Mountpoint) && (holder == nil || len(m.Mountpoint) >= len(holder.Mountpoint)) {
			holder = m
		}
	}
	if holder == nil || !strings.Contains(holder.Optional, "shared:") {
		return nil
	}
	if holder.Mountpoint != dir {
		if err := unix.Mount("cl-unshare-ns", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,nr_inodes=64,mode=700"); err != nil {
			return &mounts.Error{Op: "mount tmpfs", Target: dir, Err: err}
		}
	}
	return mounts.MakePrivate(dir)
}

// removeStalePins unpins the templates of other binaries: a level being
// made from one holds it open, and it ends with the last such level.
func removeStalePins(runDir, keep string) {
	ents, _ := os.ReadDir(templateDir(runDir))
	for _, e := range ents {
		p := filepath.Join(templateDir(runDir), e.Name())
		if strings.HasPrefix(e.Name(), "mnt-") && !strings.Contains(e.Name(), ".") && p != keep {
			_ = unix.Unmount(p, unix.MNT_DETACH)
			_ = os.Remove(p)
			_ = os.Remove(p + ".base")
		}
	}
}

// removeTemplates unpins every template and undoes RUN's own mounts; gc
// calls it once no level is left. The caller holds the state lock.
func removeTemplates(runDir string) error {
	dir := templateDir(runDir)
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer lock.Close()
	// Starts under way hold it shared until their level is recorded.
	if err := flock(lock, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil
	}
	removeStalePins(runDir, "")
	if mounted(dir) {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err := removeSelfBind(runDir); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "lock"))
	_ = os.Remove(dir)
	return nil
}

// removeSelfBind undoes makeTemplate's bind of RUN onto itself: a mount
// at RUN of the directory RUN on the filesystem below it. RUN made a
// mount by anyone else, or a level's run directory, stays.
func removeSelfBind(runDir string) error {
	infos, err := mountinfo.GetMounts(mountinfo.ParentsFilter(runDir))
	if err != nil {
		return err
	}
	byID := map[int]*mountinfo.Info{}
	for _, m := range infos {
		byID[m.ID] = m
	}
	for _, m := range infos {
		p := byID[m.Parent]
		if m.Mountpoint != runDir || p == nil || p.Major != m.Major || p.Minor != m.Minor {
			continue
		}
		if rel, ok := mounts.Below(p.Mountpoint, runDir); ok && filepath.Join(p.Root, rel) == m.Root {
			return mounts.Detach(runDir)
		}
	}
	return nil
}

// enterTemplate starts the thread a level is cloned from, in runDir's
// template, and returns it with the template (held until Close) and its
// mount table.
func enterTemplate(runDir string) (*prepared, *template, []*mountinfo.Info, error) {
	wd, _ := os.Getwd()
	t, err := openTemplate(runDir)
	if err != nil {
		return nil, nil, nil, err
	}
	var infos []*mountinfo.Info
	p, err := startThread(func() error {
		if err := joinTemplate(t.ns, wd); err != nil {
			return err
		}
		infos, err = mounts.Current()
		return err
	})
	if err == nil {
		if bad := misfit(infos, runDir); bad != "" {
			p.release()
			err = fmt.Errorf("it holds what it may not: %s", bad)
		}
	}
	if err != nil {
		t.Close()
		return nil, nil, nil, fmt.Errorf("template: %w", err)
	}
	return p, t, infos, nil
}

// misfit says what of infos no template may hold, or "".
func misfit(infos []*mountinfo.Info, runDir string) string {
	for _, m := range infos {
		if !fits(m, runDir) {
			return fmt.Sprintf("%s (%s)", m.Mountpoint, m.FSType)
		}
	}
	return ""
}

// joinTemplate moves the calling thread, with a file system context of
// its own, into the template, at the directory wd where it has one.
func joinTemplate(ns *os.File, wd string) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("setns to the template: %w", err)
	}
	_ = unix.Chdir(wd) // setns went to its root
	return nil
}
