package nsexec

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

// join enters a running level's cgroup and mount namespaces, as nsenter
// does. setns(CLONE_NEWNS) refuses a thread that shares its filesystem
// attributes, as every Go thread does, until unshare(CLONE_FS).
func join(c *Config) (string, error) {
	// Main marks the numbers every mode shares; these are join's alone.
	for _, fd := range []int{JoinNetNSFD, JoinUTSNSFD, JoinIPCNSFD, JoinTimeNSFD, JoinUserNSFD} {
		unix.CloseOnExec(fd)
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return StepJoin, fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	// Read now, while /proc is the caller's: once in the level's mount
	// namespace it is the level's, which could fake what it says. Only a
	// caller who is not root (one that hopped into the level's user
	// namespace) may skip a namespace it is in already: root enters all.
	same := map[int]bool{}
	if c.HoppedUser {
		for fd, name := range map[int]string{JoinNetNSFD: "network", JoinUTSNSFD: "uts", JoinIPCNSFD: "ipc"} {
			same[fd] = sameNS(fd, name)
		}
	}
	denied = setgroupsDenied()
	if err := unix.Setns(JoinCgroupNSFD, unix.CLONE_NEWCGROUP); err != nil {
		return StepJoin, fmt.Errorf("setns cgroup namespace: %w", err)
	}
	if err := unix.Setns(JoinMountNSFD, unix.CLONE_NEWNS); err != nil {
		return StepJoin, fmt.Errorf("setns mount namespace: %w", err)
	}
	unix.Close(JoinCgroupNSFD)
	unix.Close(JoinMountNSFD)
	for _, ns := range []struct {
		fd   int
		flag int
		name string
	}{{JoinNetNSFD, unix.CLONE_NEWNET, "network"}, {JoinUTSNSFD, unix.CLONE_NEWUTS, "uts"}, {JoinIPCNSFD, unix.CLONE_NEWIPC, "ipc"}} {
		// The host's own where the level made none: a caller who is not
		// root is in it already, and may not enter it again.
		if !same[ns.fd] {
			if err := unix.Setns(ns.fd, ns.flag); err != nil {
				return StepJoin, fmt.Errorf("setns %s namespace: %w", ns.name, err)
			}
		}
		unix.Close(ns.fd)
	}
	if c.JoinPID {
		if err := unix.Setns(JoinPIDNSFD, unix.CLONE_NEWPID); err != nil {
			return StepJoin, fmt.Errorf("setns pid namespace: %w", err)
		}
	}
	unix.Close(JoinPIDNSFD)
	if c.As != nil {
		if err := dropTo(*c.As); err != nil {
			return StepJoin, err
		}
		if err := noTerminalInjection(); err != nil {
			return StepTerminal, err
		}
		// Files the caller of cl-unshare exec left open (a log, a unit's socket)
		// are not for code the level planted.
		if err := closeInherited(); err != nil {
			return StepJoin, err
		}
	}
	// After the drop: CMD must not start in a directory it could not enter.
	if err := unix.Chdir(c.Dir); err != nil {
		_ = unix.Chdir("/")
	}
	if c.JoinPID {
		runChild(c)
	}
	return "before exec", failpoint.At("before exec")
}

// dropTo leaves this process nothing of host root's: ids.UID and
// ids.GID on every thread, no supplementary groups, and on this thread
// (the one that execs or forks CMD; capabilities are per thread) no
// capability in any set, an empty bounding set and no_new_privs, so no
// setuid binary the level's mounts offer can bring any of it back. The
// explicit clearing also covers a level whose root is host uid 0 (-r).
func dropTo(ids HostIDs) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// This thread's sets (capabilities are per thread).
	caps, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	// The bounding set needs CAP_SETPCAP: emptied while we are root.
	caps.Clear(capability.BOUNDS | capability.AMBS)
	if err := caps.Apply(capability.BOUNDS | capability.AMBS); err != nil {
		return fmt.Errorf("empty the bounding and ambient capability sets: %w", err)
	}
	// The syscall package's versions change every thread, not just this.
	if err := syscall.Setgroups(nil); err != nil && !denied {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(ids.GID, ids.GID, ids.GID); err != nil {
		return fmt.Errorf("setresgid %d: %w", ids.GID, err)
	}
	if err := syscall.Setresuid(ids.UID, ids.UID, ids.UID); err != nil {
		return fmt.Errorf("setresuid %d: %w", ids.UID, err)
	}
	caps.Clear(capability.CAPS)
	if err := caps.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}

// closeInherited marks every descriptor above stderr close-on-exec: CMD
// gets stdin, stdout and stderr only.
func closeInherited() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	ents, err := os.ReadDir("/proc/self/fd") // before Linux 5.11
	if err != nil {
		return fmt.Errorf("list open files: %w", err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// sameNS reports whether fd is the namespace of kind name this process
// is in already.
func sameNS(fd int, name string) bool {
	file := map[string]string{"network": "net", "uts": "uts", "ipc": "ipc"}[name]
	var a, b unix.Stat_t
	return file != "" && unix.Fstat(fd, &a) == nil && unix.Stat("/proc/self/ns/"+file, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
}

// denied is setgroupsDenied, read by join before it enters the level.
var denied bool

// setgroupsDenied reports whether this user namespace forbids setgroups
// (a rootless level's: its creator could map its gid only so). The
// groups a caller who is not root came with are then theirs to keep: no
// one could have given it more.
func setgroupsDenied() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
}
