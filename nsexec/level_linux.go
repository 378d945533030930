package nsexec

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// newLevel runs the steps that make a new level's namespaces and mounts,
// up to the command's execve (ModeLevel, ModeUserLevel).
func newLevel(c *Config) (string, error) {
	steps := []struct {
		name string
		do   func(*Config) error
	}{
		{StepMountNS, func(c *Config) error {
			switch c.Mode {
			case ModeUserLevel:
				return userMountNS(c)
			case ModeInPlace:
				return templateCopy(c)
			}
			return nil // cloned with CLONE_NEWNS from the template
		}},
		{StepCgroupNS, unshareCgroupNS},
		{StepNamespaces, namespaces},
		{StepPropagation, func(c *Config) error {
			// Before the mirror and run directory arrive (the launcher's
			// prepared namespace has them already with a user namespace,
			// where propagationUserNS rejoins them to their groups after).
			if err := rootPropagation(c.Propagation); err != nil {
				return err
			}
			if c.Mode == ModeUserLevel {
				return propagationUserNS(c)
			}
			return nil
		}},
		// With a user namespace the launcher did these before the
		// namespace existed (its prepared copy of the template), where
		// they can be undone.
		{StepHide, skipIfUserNS(func(*Config) error { return mounts.Detach(mounts.CgroupRoot) })},
		{StepMirror, skipIfUserNS(func(c *Config) error { return attach(c.MirrorFD, mounts.CgroupRoot) })},
		{StepRunDir, skipIfUserNS(func(c *Config) error { return attach(c.RunDirFD, c.RunDir) })},
		{StepCgroupMount, cgroupMounts},
		{StepLeaf, leaf},
		{StepProc, func(c *Config) error {
			if !c.MountProc || c.Mode == ModeUserLevel {
				return nil // with a user namespace it came with the mount namespace
			}
			return unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}},
		{StepRoot, newRoot},
		{StepProcView, func(c *Config) error {
			for _, f := range c.ProcViewFiles {
				// ModeInPlace: no user namespace, nothing is locked.
				if _, err := os.Stat(f.Target); err != nil {
					unix.Close(f.FD)
				} else if err := attach(f.FD, f.Target); err != nil {
					return err
				}
			}
			if !c.ProcView || len(c.ProcViewFiles) > 0 {
				return nil
			}
			return ask(syncFile, message{Type: msgProcView}, -1)
		}},
		{StepPersist, func(c *Config) error {
			if !c.Persist {
				return nil
			}
			return ask(syncFile, message{Type: msgPersist}, -1)
		}},
	}
	for _, s := range steps {
		if os.Getenv(failpoint.Env) == "crash:"+s.name {
			// Die without a word, as a crash would, to test the launcher.
			unix.Kill(os.Getpid(), unix.SIGKILL)
		}
		if err := failpoint.At(s.name); err != nil {
			return s.name, err
		}
		if err := s.do(c); err != nil {
			return s.name, err
		}
	}
	// A step of our own just before exec, which 126/127 never cover.
	return "before exec", failpoint.At("before exec")
}

// rootPropagation sets the propagation of / and every mount below it,
// as unshare --propagation. The template's mounts are slaves (or
// private) already, so "" and "unchanged" mean slave too.
func rootPropagation(mode string) error {
	switch mode {
	case "", "unchanged":
		return nil
	case "slave":
		return mounts.SlaveAll()
	case "shared":
		return mounts.SharedAll()
	case "private":
		return mounts.PrivateAll()
	}
	return fmt.Errorf("unknown propagation %q", mode)
}

// newRoot makes c.Root CMD's /, with pivot_root rather than chroot: the
// old root is unmounted, so no "..", second chroot or open directory
// reaches it. The level's own mounts (its cgroup tree, in the peer
// groups that reach the host's mirror; its /proc; its run directory,
// for nested levels, where Root has a place for it) are bound in first.
func newRoot(c *Config) error {
	if c.Root == "" {
		if c.WorkDir == "" {
			return nil
		}
		if err := unix.Chdir(c.WorkDir); err != nil {
			return fmt.Errorf("working directory %s: %w", c.WorkDir, err)
		}
		return nil
	}
	// pivot_root wants the new root to be a mount; a recursive bind takes
	// what is mounted below it along (and must be recursive with a user
	// namespace, whose copied mounts are locked to what covers them).
	if err := mounts.BindTree(c.Root, c.Root); err != nil {
		return err
	}
	binds := []string{mounts.CgroupRoot}
	if c.MountProc {
		binds = append(binds, "/proc")
	}
	if st, err := os.Stat(filepath.Join(c.Root, c.RunDir)); err == nil && st.IsDir() {
		binds = append(binds, c.RunDir)
	}
	for _, dir := range binds {
		// A bind of a shared mount is its peer: cgroup mounts made later
		// in the new root still reach the mirror.
		if err := mounts.BindTree(dir, filepath.Join(c.Root, dir)); err != nil {
			return err
		}
	}
	if err := mounts.PivotRoot(c.Root); err != nil {
		return err
	}
	wd := c.WorkDir
	if wd == "" {
		wd = "/"
	}
	if err := unix.Chdir(wd); err != nil {
		return fmt.Errorf("working directory %s (in the new root %s): %w", wd, c.Root, err)
	}
	return nil
}

func unshareCgroupNS(*Config) error {
	// The launcher put us in the level's cgroups in every hierarchy, so the
	// new namespace is rooted at the inner cgroup everywhere.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWCGROUP): %w", err)
	}
	return nil
}

// namespaces readies the network, UTS and IPC namespaces the level asked
// for (made here with --exec, by the clone otherwise): its names, and
// the loopback interface up, as bubblewrap does, so that 127.0.0.1 works
// inside (unshare -n leaves it down).
func namespaces(c *Config) error {
	if c.Unshare != 0 {
		if err := unix.Unshare(int(c.Unshare)); err != nil {
			return fmt.Errorf("unshare(%#x): %w", c.Unshare, err)
		}
	}
	if c.Time {
		if err := unshareTime(c); err != nil {
			return err
		}
	}
	if c.Hostname != "" {
		if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
			return fmt.Errorf("sethostname %q: %w", c.Hostname, err)
		}
	}
	if c.Domainname != "" {
		if err := unix.Setdomainname([]byte(c.Domainname)); err != nil {
			return fmt.Errorf("setdomainname %q: %w", c.Domainname, err)
		}
	}
	if c.Loopback {
		return loopbackUp()
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// templateCopy makes this thread's mount namespace a copy of the
// template (ModeInPlace, which is not cloned but exec'd in place), at the
// directory it was in where the copy has it.
func templateCopy(c *Config) error {
	wd, _ := os.Getwd()
	defer unix.Close(c.TemplateFD)
	// setns of a mount namespace wants a file system context of our own.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	if err := unix.Setns(c.TemplateFD, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("setns to the template: %w", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	_ = unix.Chdir(wd)
	return nil
}

// attach mounts a clone the launcher made of one of the level's host
// mounts (its run directory, its mirror) at dir. The clone is in the
// mount's peer group: what the level mounts on it reaches the host.
func attach(fd int, dir string) error {
	defer unix.Close(fd)
	return mounts.Attach(fd, dir)
}

func skipIfUserNS(do func(*Config) error) func(*Config) error {
	return func(c *Config) error {
		if c.Mode == ModeUserLevel {
			return nil
		}
		return do(c)
	}
}

// propagationUserNS: the run directory, already at RUN, and the mirror,
// at /sys/fs/cgroup (the launcher's prepared namespace), are locked here; a bind of each onto
// itself is ours to change. Made private, the launcher (which holds
// CAP_SYS_ADMIN over both namespaces) joins them to peer groups of its
// own through /proc/PID/root with MOVE_MOUNT_SET_GROUP.
func propagationUserNS(c *Config) error {
	for _, dir := range []string{c.RunDir, mounts.CgroupRoot} {
		if err := mounts.BindTree(dir, dir); err != nil {
			return err
		}
		if err := mounts.MakePrivate(dir); err != nil {
			return err
		}
	}
	return ask(syncFile, message{Type: msgSetGroup}, -1)
}

// userMountNS makes the mount namespace of a level with a user namespace:
// a copy of the launcher's prepared one (the launcher's prepared namespace), taken from inside
// the level's user namespace, so the kernel locks every mount it copies
// and the level can unmount none of them to see what they cover. With
// --mount-proc the level's /proc goes into the launcher's namespace first,
// to be copied locked too: the host's /proc under it stays out of reach.
func userMountNS(c *Config) error {
	if c.MountProc {
		fd, err := procMount()
		if err != nil {
			return fmt.Errorf("mount /proc: %w", err)
		}
		err = ask(syncFile, message{Type: msgProc}, fd)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	return nil
}

// procMount returns a detached mount of a new /proc of this process's PID
// namespace. fsopen needs CAP_SYS_ADMIN over the caller's mount namespace,
// which is still the launcher's here: a thread of ours makes one of its
// own first, and ends with it.
func procMount() (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with us
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			done <- result{-1, fmt.Errorf("unshare(CLONE_NEWNS): %w", err)}
			return
		}
		fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
		if err != nil {
			done <- result{-1, fmt.Errorf("fsopen proc: %w", err)}
			return
		}
		defer unix.Close(fs)
		_ = unix.FsconfigSetString(fs, "source", "proc")
		if err := unix.FsconfigCreate(fs); err != nil {
			done <- result{-1, fmt.Errorf("create proc: %w", err)}
			return
		}
		fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
		if err != nil {
			err = fmt.Errorf("fsmount proc: %w", err)
		}
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// cgroupMounts builds the host's layout at /sys/fs/cgroup, the level's
// copy of its mirror: each mount propagates to the host's (or, with a
// user namespace, the launcher's) and is mounted once here.
func cgroupMounts(c *Config) error {
	return mounts.Build(c.Layout, mounts.CgroupRoot)
}

// leaf moves this process from the level's cgroup2 namespace root to its
// leaf, and then lets the root hand every controller it has down to its
// children, as a host's root does: the no-internal-process rule forbids
// both while a process is in the root.
func leaf(c *Config) error {
	if c.Leaf == "" {
		return nil
	}
	for _, fs := range c.Layout.FS {
		if fs.Type != "cgroup2" {
			continue
		}
		root := filepath.Join(mounts.CgroupRoot, fs.Dir)
		if err := cgroup.WriteFile(filepath.Join(root, c.Leaf), "cgroup.procs", "0"); err != nil {
			return err
		}
		return cgroup.EnableAll(root)
	}
	return nil
}
