package level

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/cl-unshare/cl-unshare/nsexec"
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
		return &FlagError{"--exec", errors.New("cannot be combined with --user yet")}
	}
	if cfg.PID {
		return &FlagError{"--exec", errors.New("cannot be combined with --pid: CMD keeps its PID, so it cannot be PID 1 of a new PID namespace (drop --exec to run it under a supervisor)")}
	}
	if cfg.KillSignal != 0 || cfg.StatusFD > 0 {
		return &FlagError{"--exec", errors.New("cannot be combined with --kill-child or --json-status-fd, which need a supervisor")}
	}
	l := &Level{Name: cfg.Name, LevelDir: filepath.Join(cfg.RunDir, "levels", cfg.Name), runDir: cfg.RunDir}
	me := self()
	// The process is its own supervisor: alive exactly as long as CMD.
	l.state = &State{Name: cfg.Name, Supervisor: me, Cmd: me, Argv: cfg.Argv, LevelDir: l.LevelDir, Started: time.Now(), Exec: true}
	if err := claimName(cfg.RunDir, l.state); errors.Is(err, os.ErrExist) {
		return &InUseError{Name: cfg.Name, Path: statePath(cfg.RunDir, cfg.Name), Why: alive(cfg.RunDir, cfg.Name)}
	} else if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	l.undo = append(l.undo, func() error { return removeState(cfg.RunDir, cfg.Name) })
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v; cl-unshare gc collects the rest once this process is gone)", err, cerr)
			}
		}
	}()
	infos, err := mounts.Current()
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	layout, err := hostLayout(infos)
	if err != nil {
		return err
	}
	hs, writes, err := plan(infos, cfg.Limits)
	if err != nil {
		return err
	}
	l.cgroups, err = cgroup.Create(hs, cfg.CgroupParent, cfg.Name, writes, me.PID)
	var exists *cgroup.ExistsError
	if errors.As(err, &exists) {
		return &InUseError{Name: cfg.Name, Path: exists.Path}
	} else if err != nil {
		return fmt.Errorf("create cgroups: %w", err)
	}
	l.undo = append(l.undo, l.cgroups.Remove)
	if err := l.recordCgroups(cfg, writes); err != nil {
		return err
	}
	if err := writeState(cfg.RunDir, l.state); err != nil {
		return err
	}
	levelFD, err := l.makeRunDir(cfg)
	if err != nil {
		return err
	}
	defer unix.Close(levelFD)
	return execInPlace(&nsexec.Config{Name: cfg.Name, RunDir: cfg.RunDir, LevelDir: l.LevelDir,
		Layout: layout, Argv: cfg.Argv, ReadyFD: cfg.ReadyFD, Leaf: l.state.Leaf}, levelFD)
}

// execInPlace replaces the calling process (same PID) with the init stage,
// handing it the config through a memfd. It returns only on failure.
func execInPlace(c *nsexec.Config, levelFD int) error {
	c.Mode = nsexec.ModeInPlace
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
	for _, x := range []int{fd, levelFD} {
		if _, err := unix.FcntlInt(uintptr(x), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep fd %d across exec: %w", x, err)
		}
	}
	argv := []string{nsexec.Marker, nsexec.InPlaceArg, strconv.Itoa(fd), strconv.Itoa(levelFD)}
	err = syscall.Exec("/proc/self/exe", argv, os.Environ())
	return fmt.Errorf("exec init stage: %w", err)
}
