package level

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"golang.org/x/sys/unix"
)

// Process is a command started in a running level by Join (cl-unshare exec NAME).
type Process struct{ st *stage }

// Pid is the command's PID.
func (p *Process) Pid() int { return p.st.cmd.Process.Pid }

// Signal sends sig to the command.
func (p *Process) Signal(sig os.Signal) error { return p.st.cmd.Process.Signal(sig) }

// Wait waits for the command and returns its wait status.
func (p *Process) Wait() (syscall.WaitStatus, error) {
	ws := p.st.wait()
	p.st.restore()
	return ws, nil
}

// JoinConfig says what to run in a level and where.
type JoinConfig struct {
	RunDir                string
	Name                  string   // the level, PARENT/CHILD for a nested one
	Argv                  []string // the command
	Cgroup                string   // a path below the level's inner cgroup ("" = the inner cgroup)
	Stdin, Stdout, Stderr *os.File
}

// Join runs a command inside a running level, as nsenter would: in its
// inner cgroups (or Cgroup below them) in every hierarchy, and in its
// cgroup, mount and PID namespaces, so it counts against the level's
// limits. In a level with a user namespace, which a Go program cannot
// enter, the command runs as the host ids of that level's root, with no
// capabilities.
func Join(c JoinConfig) (*Process, error) {
	sub := path.Clean("/" + c.Cgroup)[1:]
	if c.Cgroup != "" && (strings.HasPrefix(path.Clean(c.Cgroup), "..") || strings.HasPrefix(c.Cgroup, "/")) {
		return nil, fieldErr("JoinConfig.Cgroup", "%q must be a relative path below the level's inner cgroup", c.Cgroup)
	}
	if len(c.Argv) == 0 {
		return nil, fieldErr("JoinConfig.Argv", "no command given")
	}
	i, _, err := findLevel(c.RunDir, c.Name)
	if err != nil {
		return nil, err
	}
	member := i.CmdPID
	if member == 0 {
		if pids, _ := cgroup.Procs(i.InnerCgroup); len(pids) > 0 {
			member = pids[0]
		}
	}
	if member == 0 {
		return nil, fmt.Errorf("level %s has no process left to join", c.Name)
	}
	chosen := procOf(member)
	targets, found := joinTargets(i, sub)
	if !found {
		return nil, fieldErr("JoinConfig.Cgroup", "%s: no such cgroup in level %s, in any hierarchy", c.Cgroup, c.Name)
	}
	joinUser := NeedsRootless() && readlinkNS(member, "user") != readlinkNS(os.Getpid(), "user")
	nsFiles, joinPID, err := openNamespaces(member, c.Name, joinUser)
	if err != nil {
		return nil, err
	}
	var drop, topIsUser bool
	if joinUser {
		// A level whose root is not the caller gets none of the
		// caller's supplementary groups (the launcher dropped them for
		// the level's own processes too).
		r, err := levelRoot(member)
		if err != nil {
			// The stage becomes that namespace's root on the way in.
			for _, f := range nsFiles {
				f.Close()
			}
			return nil, fmt.Errorf("level %s: its process %d: %w, which exec runs CMD as", c.Name, member, err)
		}
		if r.UID != os.Geteuid() {
			top, same, err := topUserNS(member)
			if err != nil {
				for _, f := range nsFiles {
					f.Close()
				}
				return nil, fmt.Errorf("level %s: find its launcher's user namespace: %w", c.Name, err)
			}
			drop, topIsUser = true, same
			nsFiles = append(nsFiles, top) // nsexec.JoinUserTopNSFD
		}
	}
	defer func() {
		for _, f := range nsFiles {
			f.Close()
		}
	}()
	// The namespaces opened are the chosen process's, not those of a PID
	// reused meanwhile: it must still be the same process.
	if !chosen.Alive() {
		return nil, fmt.Errorf("level %s: its process %d ended while exec joined it; try again", c.Name, member)
	}
	as := &nsexec.HostIDs{} // the root of the user namespace it hops into
	if !joinUser {
		if as, err = execAs(i, member); err != nil {
			return nil, fmt.Errorf("level %s: %w", c.Name, err)
		}
	}
	joinTime := readlinkNS(member, "time") != readlinkNS(os.Getpid(), "time")
	return startJoin(c, targets, nsFiles, joinPID, joinTime, joinUser, as, drop, topIsUser)
}

// nsGetParent is ioctl_ns(2)'s NS_GET_PARENT, _IO(0xb7, 0x2).
const nsGetParent = 0xb702

// topUserNS opens the user namespace of member's that is a child of
// ours (its own, or the ancestor of its below ours: a launcher's), and
// reports whether that is member's own.
func topUserNS(member int) (*os.File, bool, error) {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &self); err != nil {
		return nil, false, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", member))
	if err != nil {
		return nil, false, err
	}
	for depth := 0; depth < 33; depth++ {
		p, err := unix.IoctlRetInt(int(f.Fd()), nsGetParent)
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("NS_GET_PARENT: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(p, &st); err != nil || st.Dev == self.Dev && st.Ino == self.Ino {
			unix.Close(p)
			return f, depth == 0, err
		}
		f.Close()
		f = os.NewFile(uintptr(p), "user namespace")
	}
	f.Close()
	return nil, false, errors.New("user namespaces nested too deep")
}

// joinTargets is the cgroup, in every hierarchy, that a command joining
// level i goes to: SUBPATH where the level made it, its inner cgroup (or
// leaf) elsewhere, as a level may sub-divide one hierarchy and not the
// others. It reports whether SUBPATH is in any.
func joinTargets(i *Info, sub string) (map[string]string, bool) {
	targets, found := map[string]string{}, sub == ""
	for h, p := range i.Cgroups {
		targets[h] = p.Inner
		if p.Leaf != "" {
			targets[h] = p.Leaf
		}
		if st, err := os.Stat(filepath.Join(p.Inner, sub)); sub != "" && err == nil && st.IsDir() {
			targets[h], found = filepath.Join(p.Inner, sub), true
		}
	}
	return targets, found
}

// openNamespaces opens the namespaces of the level's process member that
// exec enters, at the init stage's numbers (nsexec.JoinCgroupNSFD on):
// cgroup, mount, PID (entered only if it is not ours: joinPID), network,
// UTS and IPC (entered always; each is the host's own where the level has
// none of its own), and time where the kernel has it (entered only if it
// is not ours: the stage has to hop into it).
//
// A caller who is not root enters the level's user namespace too, first
// (nsexec.JoinUserNSFD): it may enter no other without, and CMD runs as
// the root of the namespace it entered (the member's: the level's, or
// one nested in it), so as ids the kernel maps into the caller's own.
// Its records are the caller's to write, and no id they name is asked
// for. Root never enters, by the security rule above execAs: it joins as
// the level's root's host ids instead.
func openNamespaces(member int, name string, joinUser bool) (files []*os.File, joinPID bool, err error) {
	kinds := []string{"cgroup", "mnt", "pid", "net", "uts", "ipc"}
	joinPID = readlinkNS(member, "pid") != readlinkNS(os.Getpid(), "pid")
	if _, err := os.Stat("/proc/self/ns/time"); err == nil {
		kinds = append(kinds, "time") // nsexec.JoinTimeNSFD
	} else if joinUser {
		kinds = append(kinds, "") // its number, kept free
	}
	if joinUser {
		kinds = append(kinds, "user") // nsexec.JoinUserNSFD
	}
	for _, ns := range kinds {
		p := fmt.Sprintf("/proc/%d/ns/%s", member, ns)
		if ns == "" {
			p = os.DevNull
		}
		f, err := os.Open(p)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, false, fmt.Errorf("open %s namespace of level %s: %w", ns, name, err)
		}
		files = append(files, f)
	}
	return files, joinPID, nil
}

// execAs decides whom CMD runs as. In a level that is, or is nested at any
// depth below, a --user level, it is the host ids of that level's root,
// without capabilities: the chain of records the host wrote says so, and
// the process CMD joins cannot say otherwise (a level can make a record
// name one of its processes that runs in the host's user namespace, as
// one that a join left behind does). Only where a user namespace below maps
// its root into that level's ids does the kernel's word refine them. A
// joined process in a user namespace of its own counts where no record
// says anything.
func execAs(i *Info, member int) (*nsexec.HostIDs, error) {
	own := readlinkNS(member, "user") != readlinkNS(os.Getpid(), "user")
	if i.user != nil {
		ids := i.user.root()
		if r, err := levelRoot(member); own && err == nil && i.user.holds(r.UID, r.GID) {
			ids = r
		}
		return &ids, nil
	}
	if !own {
		return nil, nil
	}
	ids, err := levelRoot(member)
	if err != nil {
		return nil, err
	}
	return &ids, nil
}

// levelRoot finds the host ids of root in the user namespace of pid, from
// its uid_map and gid_map as this process reads them.
func levelRoot(pid int) (nsexec.HostIDs, error) {
	var ids nsexec.HostIDs
	for _, m := range []struct {
		file string
		id   *int
	}{{"uid_map", &ids.UID}, {"gid_map", &ids.GID}} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, m.file))
		if err != nil {
			return ids, err
		}
		found := false
		for _, e := range parseIDMaps(string(b)) {
			if e.Inner == 0 {
				*m.id, found = e.Outer, true
			}
		}
		if !found {
			return ids, fmt.Errorf("its user namespace maps no root (%s: %q)", m.file, strings.TrimSpace(string(b)))
		}
	}
	return ids, nil
}

func readlinkNS(pid int, ns string) string {
	s, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	return s
}

// startJoin starts the stage that joins the level (nsexec.ModeJoin) in
// targets, its cgroups, with its namespaces open as nsFiles.
func startJoin(c JoinConfig, targets map[string]string, nsFiles []*os.File, joinPID, joinTime, joinUser bool, as *nsexec.HostIDs, drop, topIsUser bool) (*Process, error) {
	// Pdeathsig follows the thread that forks: kept until CMD runs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st, err := startStage(stageSpec{
		stdio: stdioOf(c.Stdin, c.Stdout, c.Stderr), files: nsFiles, cgroup: targets["cgroup2"],
		attr: &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}, ownTTY: as != nil,
		run: func(start func() error) error { return start() },
	})
	var spawn *spawnError
	switch {
	case errors.As(err, &spawn) && errors.Is(err, unix.EBUSY):
		return nil, fmt.Errorf("start in %s: %w: the cgroup has controllers enabled for children (cgroup v2 no-internal-process rule); use JoinConfig.Cgroup with a leaf cgroup", targets["cgroup2"], spawn.err)
	case errors.As(err, &spawn) && errors.Is(err, unix.EACCES) && NeedsRootless():
		return nil, fmt.Errorf("start in level %s: %w: the kernel lets a user move a process into %s only from a cgroup of the same delegated subtree; %s", c.Name, spawn.err, targets["cgroup2"], joinHint)
	case errors.As(err, &spawn):
		return nil, fmt.Errorf("start in level %s: %w", c.Name, spawn.err)
	case err != nil:
		return nil, err
	}
	wd, _ := os.Getwd()
	cfg := &nsexec.Config{Mode: nsexec.ModeJoin, Name: c.Name, JoinPID: joinPID, Dir: wd, Argv: c.Argv, As: as, JoinTime: joinTime, JoinUser: joinUser, DropGroups: drop, TopIsUser: topIsUser}
	join := func(pid int) error {
		for h, dir := range targets {
			if h == "cgroup2" {
				continue // cloned into it
			}
			if err := cgroup.WriteFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("join %s cgroup: %w", h, err)
			}
		}
		return nil
	}
	if err := st.release(cfg, join, nsexec.Requests{}); err != nil {
		if !errors.Is(err, nsexec.ErrDied) {
			st.kill()
		}
		st.restore()
		return nil, err
	}
	return &Process{st}, nil
}

// stdioOf is the three files, the process's own where one is nil.
func stdioOf(in, out, errf *os.File) []*os.File {
	return []*os.File{orStd(in, os.Stdin), orStd(out, os.Stdout), orStd(errf, os.Stderr)}
}
