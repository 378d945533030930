package level

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/cl-unshare/cl-unshare/internal/pty"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"golang.org/x/sys/unix"
)

// Process is a command started in a running level by Exec.
type Process struct {
	cmd   *exec.Cmd
	fg    bool
	relay *pty.Relay // the terminal of its own, in a --user level
}

// Pid is the command's PID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the command.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the command and returns its wait status.
func (p *Process) Wait() (syscall.WaitStatus, error) {
	_ = p.cmd.Wait()
	if p.fg {
		restoreForeground()
	}
	if p.relay != nil {
		p.relay.Close()
	}
	ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws, nil
}

// ExecConfig says what to run in a level and where.
type ExecConfig struct {
	RunDir                string
	Name                  string   // the level, PARENT/CHILD for a nested one
	Argv                  []string // the command
	Cgroup                string   // a path below the level's inner cgroup ("" = the inner cgroup)
	Stdin, Stdout, Stderr *os.File
}

// Exec runs a command inside a running level, as nsenter would: in its
// inner cgroups (or Cgroup below them) in every hierarchy, and in its
// cgroup, mount and PID namespaces, so it counts against the level's
// limits. In a level with a user namespace, which a Go program cannot
// enter, the command runs as the host ids of that level's root, with no
// capabilities.
func Exec(c ExecConfig) (*Process, error) {
	sub := path.Clean("/" + c.Cgroup)[1:]
	if c.Cgroup != "" && (strings.HasPrefix(path.Clean(c.Cgroup), "..") || strings.HasPrefix(c.Cgroup, "/")) {
		return nil, &FlagError{"--cgroup", fmt.Errorf("%q must be a relative path below the level's inner cgroup", c.Cgroup)}
	}
	if len(c.Argv) == 0 {
		return nil, &FlagError{"command", errors.New("no command given")}
	}
	i, err := Find(c.RunDir, c.Name)
	if i, err = usable(c.Name, i, err); err != nil {
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
	// SUBPATH where the level made it, the inner cgroup elsewhere (a
	// level may sub-divide one hierarchy and not the others).
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
	if !found {
		return nil, &FlagError{"--cgroup", fmt.Errorf("%s: no such cgroup in level %s, in any hierarchy", c.Cgroup, c.Name)}
	}
	var fds []*os.File
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	for _, ns := range []string{"cgroup", "mnt"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", member, ns))
		if err != nil {
			return nil, fmt.Errorf("open %s namespace of level %s: %w", ns, c.Name, err)
		}
		fds = append(fds, f)
	}
	// A level with a PID namespace of its own: enter it too.
	joinPID := readlinkNS(member, "pid") != readlinkNS(os.Getpid(), "pid")
	if joinPID {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", member))
		if err != nil {
			return nil, fmt.Errorf("open pid namespace of level %s: %w", c.Name, err)
		}
		fds = append(fds, f)
	}
	// The namespaces opened are the chosen process's, not those of a PID
	// reused meanwhile: it must still be the same process.
	if !chosen.Alive() {
		return nil, fmt.Errorf("level %s: its process %d ended while exec joined it; try again", c.Name, member)
	}
	as, err := execAs(i, member)
	if err != nil {
		return nil, fmt.Errorf("level %s: %w", c.Name, err)
	}
	return startJoin(c, targets, fds, joinPID, as)
}

// execAs decides whom CMD runs as. In a level that is, or is nested at any
// depth below, a --user level, it is the host ids of that level's root,
// without capabilities: the chain of records the host wrote says so, and
// the process CMD joins cannot say otherwise (a level can make a record
// name one of its processes that runs in the host's user namespace, as
// one that exec left behind does). Only where a user namespace below maps
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

// relayTerminal replaces, in stdio, each terminal with a new pty's slave,
// which becomes the controlling terminal of a new session; nil where
// none of them is a terminal.
func relayTerminal(stdio []*os.File, attr *syscall.SysProcAttr) (*pty.Relay, error) {
	var relay *pty.Relay
	for i, f := range stdio {
		if !pty.IsTerminal(f) {
			continue
		}
		if relay == nil {
			r, err := pty.Open(f)
			if err != nil {
				return nil, err
			}
			relay = r
			attr.Setpgid, attr.Setsid, attr.Setctty, attr.Ctty = false, true, true, i
		}
		stdio[i] = relay.Slave
	}
	return relay, nil
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

func startJoin(c ExecConfig, targets map[string]string, nsFiles []*os.File, joinPID bool, as *nsexec.HostIDs) (*Process, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent, child := os.NewFile(uintptr(pair[0]), "sync"), os.NewFile(uintptr(pair[1]), "sync-child")
	defer parent.Close()
	stdio := []*os.File{orStd(c.Stdin, os.Stdin), orStd(c.Stdout, os.Stdout), orStd(c.Stderr, os.Stderr)}
	p := &Process{}
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: unix.SIGKILL}
	if as != nil {
		// Code the level planted gets no hold on the caller's terminal
		// (it could keep reading it, or take its foreground, after exec
		// returns): a pty of its own, relayed, and gone when CMD is.
		if p.relay, err = relayTerminal(stdio, attr); err != nil {
			child.Close()
			parent.Close()
			return nil, fmt.Errorf("exec %s: a terminal of its own: %w", c.Name, err)
		}
	}
	if p.relay == nil && isForeground(stdio[0]) {
		p.fg = true
		attr.Foreground, attr.Ctty = true, int(stdio[0].Fd())
	}
	if dir, ok := targets["cgroup2"]; ok {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			child.Close()
			return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
		}
		defer unix.Close(fd)
		attr.UseCgroupFD, attr.CgroupFD = true, fd
	}
	p.cmd = &exec.Cmd{
		Path: "/proc/self/exe", Args: []string{nsexec.Marker},
		Stdin: stdio[0], Stdout: stdio[1], Stderr: stdio[2],
		ExtraFiles:  append([]*os.File{child}, nsFiles...),
		SysProcAttr: attr,
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = p.cmd.Start()
	child.Close()
	if p.relay != nil {
		p.relay.Slave.Close() // CMD's now
		if err != nil {
			p.relay.Close()
		} else {
			p.relay.Start()
		}
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("start in %s: %w: the cgroup has controllers enabled for children (cgroup v2 no-internal-process rule); use --cgroup with a leaf cgroup", targets["cgroup2"], err)
		}
		return nil, fmt.Errorf("start in level %s: %w", c.Name, err)
	}
	fail := func(err error) (*Process, error) {
		_ = p.cmd.Process.Kill()
		_, _ = p.Wait() // gives the terminal back too
		return nil, err
	}
	for h, dir := range targets {
		if h == "cgroup2" {
			continue
		}
		if err := cgroup.WriteFile(dir, "cgroup.procs", strconv.Itoa(p.cmd.Process.Pid)); err != nil {
			return fail(fmt.Errorf("join %s cgroup: %w", h, err))
		}
	}
	wd, _ := os.Getwd()
	if err := nsexec.SendConfig(parent, &nsexec.Config{Mode: nsexec.ModeJoin, Name: c.Name, JoinPID: joinPID, Dir: wd, Argv: c.Argv, As: as}); err != nil {
		return fail(err)
	}
	if err := nsexec.Wait(parent); err != nil {
		if errors.Is(err, nsexec.ErrDied) {
			_, _ = p.Wait()
			return nil, fmt.Errorf("%w: %v", err, p.cmd.ProcessState)
		}
		return fail(err)
	}
	return p, nil
}
