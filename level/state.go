package level

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"golang.org/x/sys/unix"
)

// State is what a supervisor records about its level in RUN/state/NAME.json,
// outside the level's own run directory, so the level can neither see nor
// change it. Everything in it is checked against the kernel before use: a
// PID counts only with the same start time, a cgroup only if it exists.
type State struct {
	Name       string            `json:"name"`
	Supervisor Proc              `json:"supervisor"`
	Cmd        Proc              `json:"cmd"`
	Argv       []string          `json:"argv"`
	LevelDir   string            `json:"level_dir"`
	Outer      map[string]string `json:"outer_cgroups"` // hierarchy name -> outer cgroup directory
	Inner      map[string]string `json:"inner_cgroups"`
	Limits     map[string]string `json:"limits"` // controller file -> value written
	Started    time.Time         `json:"started"`
	// InPlace: started by ExecInPlace (--exec), CMD is its own supervisor.
	// The key stays "exec", as records of running levels have it.
	InPlace bool    `json:"exec,omitempty"`
	User    *UserNS `json:"user,omitempty"` // started with --user
	// Rootless: started by a user who is not root (StartRootless).
	Rootless bool   `json:"rootless,omitempty"`
	Leaf     string `json:"leaf,omitempty"` // the cgroup2 leaf below the inner cgroup
	// Making are the outer cgroups a start is making, until Outer has
	// them: gc removes those a killed start left (empty, or it leaves
	// them and says so).
	Making map[string]string `json:"making,omitempty"`
	// Persist are the namespaces kept on files (Config.Persist), which
	// teardown and gc unmount where the file still holds that namespace.
	Persist []PersistedNS `json:"persist,omitempty"`
	// Exit is how CMD ended, written as the supervisor begins teardown.
	Exit *ExitStatus `json:"exit,omitempty"`
}

// PersistedNS is a namespace kept by a bind mount on Path: its kind, its
// inode (what makes the mount the level's, checked before unmounting),
// the inode and change time of the file under it, and whether cl-unshare
// made the file, to remove it after (only if it is still that file).
type PersistedNS struct {
	Kind      string `json:"kind"`
	Path      string `json:"path"`
	Inode     uint64 `json:"inode"`
	FileInode uint64 `json:"file_inode,omitempty"`
	FileCtime int64  `json:"file_ctime,omitempty"`
	Created   bool   `json:"created,omitempty"`
}

// ExitStatus is how a level's command ended, as the exit event says it.
type ExitStatus struct {
	Code     int    `json:"exit_code"`
	How      string `json:"how"`
	Signal   string `json:"signal,omitempty"`
	OOMKills int    `json:"oom_kills,omitempty"`
}

// UserNS is the user namespace a level was started with. Its root's host
// ids are what a join (`cl-unshare exec`) runs as in that level and in every level nested in
// it: records written inside it are the level's, never trusted for that.
type UserNS struct {
	UIDMap IDMap `json:"uid_map"`
	GIDMap IDMap `json:"gid_map"`
	// OwnsLimits: its root owns its root cgroup's limit files, for want
	// of an id to give them that its map leaves out (a level nested in a
	// --user level, with that level's root). Writes to them then succeed,
	// without raising anything.
	OwnsLimits bool `json:"owns_limits,omitempty"`
}

// root is the host ids of the namespace's root.
func (u *UserNS) root() nsexec.HostIDs {
	return nsexec.HostIDs{UID: u.UIDMap.Outer - u.UIDMap.Inner, GID: u.GIDMap.Outer - u.GIDMap.Inner}
}

// holds reports whether host ids uid and gid are inside the namespace's maps.
func (u *UserNS) holds(uid, gid int) bool {
	in := func(m IDMap, id int) bool { return id >= m.Outer && id < m.Outer+m.Count }
	return in(u.UIDMap, uid) && in(u.GIDMap, gid)
}

func stateDir(runDir string) string { return filepath.Join(runDir, "state") }

func statePath(runDir, name string) string {
	return filepath.Join(stateDir(runDir), name+".json")
}

// stateModes are the state directory's mode and its records'. They are
// the host's alone (0700, 0600), except in a level below a user's
// launcher (RunDirEnv set, in a user namespace, not the launcher): there the user, who
// reads them through /proc/PID/root to list the level's nested levels,
// may be an id the level does not map (a root from the user's range),
// so only the ids of the level's own namespace can be kept out. They
// could read the same of /proc.
func stateModes() (dir, file os.FileMode) {
	if os.Getenv(RunDirEnv) != "" && !initialUserNS() && !rootless {
		return 0o755, 0o644
	}
	return 0o700, 0o600
}

// claimState creates the state file, failing if the name is taken: the
// file is the level's name lock, taken before anything else is made.
func claimState(runDir string, s *State) error {
	// RUN itself must stay searchable (a level's root in a user namespace
	// walks through it); only RUN/state is the host's alone.
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	// Again, now that it is there: a directory someone else made first,
	// between Validate and here, is theirs.
	if err := trustRunDir(runDir); err != nil {
		return err
	}
	dirMode, _ := stateModes()
	if err := os.Mkdir(stateDir(runDir), dirMode); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("state directory: %w", err)
	}
	// The record is written to an unnamed file and linked into place,
	// which fails if the name is taken: a start killed at any moment
	// leaves either no record or a whole one, never an empty file that
	// no gc could read.
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, mode := stateModes()
	f, err := os.OpenFile(stateDir(runDir), os.O_WRONLY|unix.O_TMPFILE, mode)
	if err != nil {
		return claimNamed(runDir, s) // a filesystem without O_TMPFILE
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write state %s: %w", statePath(runDir, s.Name), err)
	}
	err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, statePath(runDir, s.Name), unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.EEXIST) {
		return os.ErrExist
	} else if err != nil {
		return fmt.Errorf("write state %s: %w", statePath(runDir, s.Name), err)
	}
	return nil
}

// claimNamed claims the name with an empty file, then writes it.
func claimNamed(runDir string, s *State) error {
	_, mode := stateModes()
	f, err := os.OpenFile(statePath(runDir, s.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	f.Close()
	return writeState(runDir, s)
}

// lockState holds RUN/state for the caller, to read a record and act on
// it (collect it, or a dead level's name for a new one) with no other
// cl-unshare doing the same in between; unlock releases it.
func lockState(runDir string) (unlock func(), err error) {
	fd, err := unix.Open(stateDir(runDir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", stateDir(runDir), err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", stateDir(runDir), err)
	}
	return func() { unix.Close(fd) }, nil
}

// dead reports whether nothing of the level is alive: supervisor and CMD
// gone, and no process left in any of its cgroups.
func (s *State) dead() bool {
	if s.Supervisor.Alive() || s.Cmd.Alive() {
		return false
	}
	cg, err := cgroup.Adopt(s.Outer)
	return err == nil && (len(cg.Dirs) == 0 || cg.Empty())
}

// alive says what keeps the level of that name from being collected.
func alive(runDir, name string) string {
	s, err := readState(runDir, name)
	switch {
	case err != nil:
		return ""
	case s.Supervisor.Alive():
		return fmt.Sprintf("its supervisor, PID %d, runs", s.Supervisor.PID)
	case s.Cmd.Alive():
		return fmt.Sprintf("its command, PID %d, runs", s.Cmd.PID)
	}
	return fmt.Sprintf("processes are left in its cgroups; cl-unshare gc %s kills them", name)
}

// claimName takes the name for a new level. A level of that name in which
// nothing is alive (an --exec level whose CMD ended, a killed one) is
// collected first, as gc would: a service restarted by its manager gets
// its name back. A level with anything alive keeps it (os.ErrExist).
func claimName(runDir string, s *State) error {
	err := claimState(runDir, s)
	if !errors.Is(err, os.ErrExist) {
		return err
	}
	unlock, lerr := lockState(runDir)
	if lerr != nil {
		return lerr
	}
	defer unlock()
	old, rerr := readState(runDir, s.Name)
	if errors.Is(rerr, os.ErrNotExist) {
		return claimState(runDir, s) // collected meanwhile
	}
	if rerr != nil || !old.dead() {
		return err
	}
	if _, err := collect(runDir, old); err != nil {
		return fmt.Errorf("collect the ended level %s first: %w", s.Name, err)
	}
	return claimState(runDir, s)
}

// writeState replaces the state file whole (write and rename).
func writeState(runDir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	p := statePath(runDir, s.Name)
	tmp := p + ".tmp"
	_, mode := stateModes()
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("write state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state %s: %w", p, err)
	}
	return nil
}

// readState reads a level's state file.
func readState(runDir, name string) (*State, error) {
	b, err := os.ReadFile(statePath(runDir, name))
	if err != nil {
		return nil, err
	}
	return decodeState(b, name)
}

// decodeState decodes the record of level name.
func decodeState(b []byte, name string) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s.json: %w", name, err)
	}
	if s.Name != name {
		return nil, fmt.Errorf("state file %s.json names %q", name, s.Name)
	}
	return &s, nil
}

func removeState(runDir, name string) error {
	err := os.Remove(statePath(runDir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// stateNames lists the levels that have a state file under runDir.
func stateNames(runDir string) ([]string, error) {
	ents, err := os.ReadDir(stateDir(runDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() && ValidateName(n) == nil {
			out = append(out, n)
		}
	}
	return out, nil
}
