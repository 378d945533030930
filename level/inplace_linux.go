package level

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"github.com/cl-unshare/cl-unshare/procview"
	"golang.org/x/sys/unix"
)

// ExecInPlace sets up a level around the calling process and then execs
// CMD in it with the same PID (for init systems: the service manager keeps
// tracking the real main process). The process moves itself into the
// level's cgroups first, leaving its own cgroup empty so that controllers
// can be enabled for the level there. It returns only on failure; what a
// failure after the move leaves behind is collected by GC once the
// process is gone, and the error says so.
func ExecInPlace(cfg Config) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.User {
		return fieldErr("ExecInPlace", "cannot be combined with Config.User yet")
	}
	if cfg.PID {
		return fieldErr("ExecInPlace", "cannot be combined with Config.PID: CMD keeps its PID, so it cannot be PID 1 of a new PID namespace (drop ExecInPlace to run it under a supervisor)")
	}
	if len(cfg.Persist) > 0 {
		return fieldErr("ExecInPlace", "cannot be combined with Config.Persist: once CMD runs, nothing of cl-unshare is left to keep its namespaces or to remove them")
	}
	if cfg.KillSignal != 0 || cfg.StatusFD > 0 || cfg.Timeout > 0 {
		return fieldErr("ExecInPlace", "cannot be combined with Config.KillSignal, Config.StatusFD or Config.Timeout, which need a supervisor (under systemd, RuntimeMaxSec= is the unit's time limit)")
	}
	me := self()
	// The process is its own supervisor: alive exactly as long as CMD.
	l := newLevel(cfg, &State{Supervisor: me, Cmd: me, InPlace: true})
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v; cl-unshare gc collects the rest once this process is gone)", err, cerr)
			}
		}
	}()
	layout, err := l.build(cfg, me.PID)
	if err != nil {
		return err
	}
	if cfg.ProcView {
		// Its watcher and server outlive the exec: they are not ours.
		// They started in the level's cgroups, where this process is; on
		// cgroup v2 they go to the leaf, as its root may hold none (it
		// hands its controllers down), and the level's limits and kill
		// cover them: with no supervisor, they are the level's.
		if err := l.startProcView(); err != nil {
			return err
		}
		if v2 := l.cgroups.V2(); v2 != nil && v2.Leaf != "" {
			for _, pid := range l.viewPids {
				if err := cgroup.WriteFile(v2.Leaf, "cgroup.procs", strconv.Itoa(pid)); err != nil {
					return fmt.Errorf("proc view: %w", err)
				}
			}
		}
	}
	return execInPlace(&nsexec.Config{Name: cfg.Name, RunDir: cfg.RunDir, LevelDir: l.LevelDir,
		Layout: layout, Argv: cfg.Argv, ReadyFD: cfg.ReadyFD, Leaf: l.state.Leaf,
		Unshare: nsFlags(cfg), Hostname: cfg.Hostname, Domainname: cfg.Domainname, Loopback: cfg.Net,
		SetUID: cfg.SetUID, SetGID: cfg.SetGID, KeepCaps: cfg.KeepCaps,
		Propagation: cfg.Propagation, Root: cfg.Root, WorkDir: cfg.WorkDir,
		Time: cfg.Time, Monotonic: int64(cfg.Monotonic), Boottime: int64(cfg.Boottime)}, l)
}

// execInPlace replaces the calling process (same PID) with the init stage,
// handing it the config through a memfd, and the template and the clones
// of the level's run directory by their numbers there. It returns only on
// failure.
func execInPlace(c *nsexec.Config, l *Level) error {
	c.Mode = nsexec.ModeInPlace
	c.RunDirFD, c.MirrorFD, c.TemplateFD = int(l.clones.run.Fd()), int(l.clones.mirror.Fd()), int(l.template.ns.Fd())
	for i, f := range l.clones.view {
		c.ProcViewFiles = append(c.ProcViewFiles, nsexec.ViewFile{FD: int(f.Fd()), Target: procview.Files[i].Target})
	}
	fd, err := unix.MemfdCreate("cl-unshare-config", 0)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "config")
	defer f.Close()
	if err := json.NewEncoder(f).Encode(c); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	keep := []int{fd, c.RunDirFD, c.MirrorFD, c.TemplateFD}
	for _, f := range c.ProcViewFiles {
		keep = append(keep, f.FD)
	}
	for _, x := range keep {
		if _, err := unix.FcntlInt(uintptr(x), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep fd %d across exec: %w", x, err)
		}
	}
	stage := reexec(nsexec.Marker, nsexec.InPlaceArg, strconv.Itoa(fd))
	err = syscall.Exec(stage.Path, stage.Args, os.Environ())
	return fmt.Errorf("exec init stage: %w", err)
}
