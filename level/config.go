package level

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// DefaultLeaf is the cgroup2 leaf a level's processes start in: inside,
// /proc/self/cgroup shows 0::/init.
const DefaultLeaf = "init"

// DefaultRunDir is where levels are mirrored for the host.
const DefaultRunDir = "/run/cl-unshare"

// Config describes a level to start.
type Config struct {
	// Name names the level's cgroups and run directory; empty means a
	// generated unique name.
	Name string
	// Argv is the command; it must not be empty.
	Argv []string
	// CgroupParent is a path relative to the launcher's own cgroup under
	// which the level's cgroups are made ("" = the launcher's cgroup).
	CgroupParent string
	// RunDir replaces DefaultRunDir.
	RunDir string
	// Limits go on the level's outer cgroup before the command starts.
	Limits cgroup.Limits
	// Stdin, Stdout and Stderr default to the launcher's.
	Stdin, Stdout, Stderr *os.File
	// ReadyFD, if > 0, is closed once the level is fully set up (by the
	// final execve with --exec; by the supervisor otherwise).
	ReadyFD int
	// StatusFD, if > 0, receives JSON lines: "ready", then "exit".
	StatusFD int
	// KillSignal, if set, is sent to CMD when the supervisor dies.
	KillSignal unix.Signal
	// PID gives the level a PID namespace: CMD is its PID 1. MountProc
	// mounts a fresh /proc there. Init (with PID) puts cl-unshare there
	// as PID 1 instead, to reap orphans: CMD is its child, and Pid() is
	// the init's.
	PID, MountProc, Init bool
	// Net, UTS and IPC give the level its own network namespace (with
	// its loopback interface up, as bubblewrap does, so 127.0.0.1 works),
	// UTS namespace (named Hostname and Domainname, if set) and IPC
	// namespace (System V IPC and POSIX message queues).
	Net, UTS, IPC        bool
	Hostname, Domainname string
	// Time gives the level a time namespace (Linux 6.2 or later), whose
	// CLOCK_MONOTONIC and CLOCK_BOOTTIME are offset by Monotonic and
	// Boottime (whole seconds or not; negative is allowed down to the
	// clock's zero), set before CMD enters it, as unshare -T --monotonic
	// --boottime. Its uptime in /proc is the boot-time clock's.
	Time                bool
	Monotonic, Boottime time.Duration
	// Persist keeps namespaces of the level by a bind mount of each on a
	// file, as unshare --net=FILE: kind ("pid", "net", "uts", "ipc",
	// "time" or "user", each of which the level must have) -> absolute
	// path. A missing file is made, and removed again with the mount when
	// the level goes. Not with ExecInPlace, which leaves nothing behind to
	// make the mounts once CMD runs.
	Persist map[string]string
	// ProcView shows CMD a /proc (cpuinfo, stat, meminfo, swaps, uptime,
	// loadavg) and /sys/devices/system/cpu/online that follow the limits of
	// the reader's own cgroup and its ancestors, as lxcfs does: nproc-like
	// tools, free and thread pools see the level's CPUs and memory. It is
	// served through FUSE by a process of its own, outside the level.
	ProcView bool
	// SetUID and SetGID, if set, are the ids CMD runs as in the level
	// (ids of its user namespace with User), set just before CMD starts,
	// as unshare --setuid and --setgid; SetGID also drops supplementary
	// groups where the kernel allows it.
	SetUID, SetGID *int
	// Propagation is the mount propagation of the level's / and all below
	// it, as unshare --propagation: "slave" (the default, also "" and
	// "unchanged": host mounts arrive, none of the level's leave),
	// "shared" (host mounts arrive; the level's reach mount namespaces
	// made from its own, never the host) or "private" (nothing in or out).
	// The level's cgroup mounts reach the host's mirror in every mode.
	Propagation string
	// Root, if set, is the directory CMD sees as / (pivot_root, as
	// unshare --root, so the old root is not reachable at all). It needs
	// sys/fs/cgroup, where the level's cgroup tree is mounted, and proc
	// with MountProc; the run directory is bound in where Root has RUN,
	// for nested levels. WorkDir is the directory CMD starts in (in
	// Root; "/" there by default).
	Root, WorkDir string
	// User gives the level a user namespace in which its root is UIDMap's
	// and GIDMap's host ids; the level's inner cgroups and the delegatable
	// files in them are handed to that root, and nothing else.
	User           bool
	UIDMap, GIDMap IDMap
	// AllowSetgroups, with User, lets the level's processes call
	// setgroups(2) (/proc/PID/setgroups "allow", unshare --setgroups
	// allow); by default it is "deny", so no process in the level can
	// drop a group to pass a file's deny-by-group permission.
	AllowSetgroups bool
	// KeepCaps, with User, lets CMD keep the capabilities it has in the
	// level's user namespace when SetUID makes it someone other than root
	// there, as ambient capabilities, as unshare --keep-caps.
	KeepCaps bool
	// Leaf names the cgroup2 cgroup below the level's namespace root where
	// its processes start (DefaultLeaf if ""), so that the root holds no
	// process and has every controller the level was given enabled for
	// its children; NoLeaf keeps them in the root instead, as before.
	Leaf   string
	NoLeaf bool
	// MirrorMax, with User, bounds the mounts the level may have under its
	// /sys/fs/cgroup and run directory, which the host's mirror is copied
	// from (mirror.DefaultMax if 0); a level over it is stopped.
	MirrorMax int
	// Timeout, if above 0, stops the level once it has run that long,
	// as timeout(1) does: SIGTERM to every process of it, then SIGKILL
	// after KillAfter (DefaultKillAfter if 0). Wait's *StoppedError then
	// has Code 124, or 137 if SIGKILL was needed. It needs a supervisor.
	Timeout, KillAfter time.Duration
}

// FieldError is an error in one field of a Config or JoinConfig. Field
// names it as Go code would ("Config.RunDir", "Limits.Memory",
// "JoinConfig.Cgroup"); a message that names other fields names them
// the same way, so that a command line can show its flags instead.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{field, fmt.Errorf(format, args...)}
}

// Validate checks the config and fills in defaults. It touches nothing.
func (c *Config) Validate() error {
	rootlessDefaults(c)
	if c.Name == "" {
		c.Name = generateName()
	}
	if err := ValidateName(c.Name); err != nil {
		return &FieldError{"Config.Name", err}
	}
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return fieldErr("Config.Argv", "no command given")
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if !filepath.IsAbs(c.RunDir) {
		return fieldErr("Config.RunDir", "%q is not an absolute path", c.RunDir)
	}
	c.RunDir = filepath.Clean(c.RunDir)
	if err := trustRunDir(c.RunDir); err != nil {
		return err
	}
	p, err := cleanParent(c.CgroupParent)
	if err != nil {
		return &FieldError{"Config.CgroupParent", err}
	}
	c.CgroupParent = p
	for _, f := range []struct {
		field string
		fd    int
	}{{"Config.ReadyFD", c.ReadyFD}, {"Config.StatusFD", c.StatusFD}} {
		if f.fd == 0 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(f.fd), unix.F_GETFD, 0); err != nil || f.fd < 0 {
			return fieldErr(f.field, "%d is not an open file descriptor", f.fd)
		}
	}
	if err := c.validateUser(); err != nil {
		return err
	}
	if err := c.validateLeaf(); err != nil {
		return err
	}
	if err := c.validateNamespaces(); err != nil {
		return err
	}
	if err := c.validateIDs(); err != nil {
		return err
	}
	if c.ProcView {
		if err := checkFUSE(); err != nil {
			return &FieldError{"Config.ProcView", err}
		}
	}
	if err := c.validatePersist(); err != nil {
		return err
	}
	if err := c.validateRoot(); err != nil {
		return err
	}
	if c.Init && !c.PID {
		return fieldErr("Config.Init", "needs Config.PID (it runs as PID 1 of the level's PID namespace)")
	}
	if c.MountProc && !c.PID {
		return fieldErr("Config.MountProc", "needs Config.PID (a /proc of the host's PID namespace would show every process)")
	}
	return validateLimits(&c.Limits)
}

// validateUser checks the user namespace's id maps against those of
// this process, and the mirror's bound.
func (c *Config) validateUser() error {
	if !c.User && (c.UIDMap.Count > 0 || c.GIDMap.Count > 0) {
		return &FieldError{"Config.UIDMap", errNoUserNS}
	}
	if c.User && c.UIDMap.Count == 0 {
		c.UIDMap = defaultRange
	}
	if c.User && c.GIDMap.Count == 0 {
		c.GIDMap = c.UIDMap
	}
	for _, m := range []struct {
		field, set string
		m          IDMap
	}{{"Config.UIDMap", "Config.SetUID", c.UIDMap}, {"Config.GIDMap", "Config.SetGID", c.GIDMap}} {
		if c.User && m.m.Inner != 0 {
			return fieldErr(m.field, "starts at id %d, not 0: the level's root must be mapped, as the level is set up as it (map from 0, and use %s to run CMD as another id)", m.m.Inner, m.set)
		}
	}
	for _, m := range []struct {
		field, file string
		m           IDMap
	}{{"Config.UIDMap", "/proc/self/uid_map", c.UIDMap}, {"Config.GIDMap", "/proc/self/gid_map", c.GIDMap}} {
		if !c.User {
			break
		}
		b, err := os.ReadFile(m.file)
		if err == nil {
			err = mappedHere(m.m, string(b), m.file)
		}
		if err != nil {
			return &FieldError{m.field, err}
		}
	}
	if c.Timeout < 0 {
		return fieldErr("Config.Timeout", "invalid duration %s (use one above 0, such as 30s or 5m)", c.Timeout)
	}
	if c.KillAfter < 0 {
		return fieldErr("Config.KillAfter", "invalid duration %s (use one above 0, such as 10s)", c.KillAfter)
	}
	if c.KillAfter > 0 && c.Timeout == 0 {
		return fieldErr("Config.KillAfter", "needs Config.Timeout")
	}
	if c.AllowSetgroups && !c.User {
		return &FieldError{"Config.AllowSetgroups", errNoUserNS}
	}
	if c.KeepCaps && !c.User {
		return fieldErr("Config.KeepCaps", "needs Config.User (capabilities are kept only in the level's own user namespace, never the host's)")
	}
	if c.MirrorMax < 0 {
		return fieldErr("Config.MirrorMax", "invalid count %d", c.MirrorMax)
	}
	if c.MirrorMax > 0 && !c.User {
		return fieldErr("Config.MirrorMax", "needs Config.User (without it the level's mounts reach the host by propagation, and root in it is the host's root anyway)")
	}
	return nil
}

// validateNamespaces checks the names a UTS namespace gets, and that the
// kernel has the namespaces asked for.
func (c *Config) validateNamespaces() error {
	for _, n := range []struct{ field, name string }{{"Config.Hostname", c.Hostname}, {"Config.Domainname", c.Domainname}} {
		switch {
		case n.name != "" && !c.UTS:
			return fieldErr(n.field, "needs Config.UTS (a name is given to the level's own UTS namespace, never the host's)")
		case len(n.name) > 64:
			return fieldErr(n.field, "%q is longer than the kernel's 64 bytes", n.name)
		}
	}
	for _, o := range []struct {
		field string
		d     time.Duration
	}{{"Config.Monotonic", c.Monotonic}, {"Config.Boottime", c.Boottime}} {
		if o.d != 0 && !c.Time {
			return fieldErr(o.field, "needs Config.Time (the offset is of the level's own clocks, never the host's)")
		}
	}
	for _, o := range []struct {
		field string
		clock int32
		d     time.Duration
	}{{"Config.Monotonic", unix.CLOCK_MONOTONIC, c.Monotonic}, {"Config.Boottime", unix.CLOCK_BOOTTIME, c.Boottime}} {
		var now unix.Timespec
		if o.d >= 0 || unix.ClockGettime(o.clock, &now) != nil {
			continue
		}
		// The kernel keeps a namespace's clocks at or above zero.
		if at := time.Duration(now.Nano()); at+o.d < 0 {
			return fieldErr(o.field, "offset %v takes the clock below zero: it reads %v here (use an offset of -%d seconds or more)", o.d, at.Truncate(time.Second), int64(at.Seconds()))
		}
	}
	for _, n := range []struct {
		field, ns string
		on        bool
	}{{"Config.Net", "net", c.Net}, {"Config.UTS", "uts", c.UTS}, {"Config.IPC", "ipc", c.IPC}, {"Config.Time", "time", c.Time}} {
		_, err := os.Stat("/proc/self/ns/" + n.ns)
		if err == nil {
			// Tests fake a kernel without this kind of namespace.
			err = failpoint.At("no " + n.ns + " namespaces")
		}
		if n.on && err != nil {
			return fieldErr(n.field, "this kernel has no %s namespaces (/proc/self/ns/%s: %v)", n.ns, n.ns, err)
		}
	}
	if c.Time && !timeNSOnExec() {
		return fieldErr("Config.Time", "needs Linux 6.2 or later, where execve enters the new time namespace (this is %s)", kernelRelease())
	}
	return nil
}

// validatePersist checks that each namespace to keep is one the level
// has, on a file that can take the bind mount.
func (c *Config) validatePersist() error {
	has := map[string]struct {
		on    bool
		field string
	}{"pid": {c.PID, "Config.PID"}, "net": {c.Net, "Config.Net"}, "uts": {c.UTS, "Config.UTS"},
		"ipc": {c.IPC, "Config.IPC"}, "time": {c.Time, "Config.Time"}, "user": {c.User, "Config.User"}}
	for _, kind := range slices.Sorted(maps.Keys(c.Persist)) {
		file := c.Persist[kind]
		field := "Config.Persist." + kind
		ns, known := has[kind]
		switch {
		case !known:
			return fieldErr("Config.Persist", "%q is not a namespace a level can keep (use pid, net, uts, ipc, time or user)", kind)
		case !ns.on:
			return fieldErr(field, "needs %s (only a namespace of the level's own is kept)", ns.field)
		case file == "":
			return fieldErr(field, "no file given")
		case NeedsRootless() || rootless:
			return fieldErr(field, "keeping the namespace on %s needs root: a user's level would bind it in its launcher's own mount namespace, which the host does not see (join the level with cl-unshare exec instead)", file)
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return fieldErr(field, "%s: %v", file, err)
		}
		c.Persist[kind] = abs
		if st, err := os.Stat(filepath.Dir(abs)); err != nil || !st.IsDir() {
			return fieldErr(field, "%s: no such directory (make it first)", filepath.Dir(abs))
		}
		st, err := os.Lstat(abs)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fieldErr(field, "%s: %v", abs, unwrapPath(err))
		case mounted(abs):
			return fieldErr(field, "%s is a mount point already (unmount it, or use another file)", abs)
		case !st.Mode().IsRegular():
			return fieldErr(field, "%s is not a regular file (a namespace is kept on a file)", abs)
		}
	}
	return nil
}

// validateRoot checks the propagation mode and that the new root and
// working directory are directories, with what the level mounts there.
func (c *Config) validateRoot() error {
	switch c.Propagation {
	case "", "slave", "shared", "private", "unchanged":
	default:
		return fieldErr("Config.Propagation", "invalid mode %q (use slave, shared, private or unchanged)", c.Propagation)
	}
	isDir := func(field, dir string) error {
		st, err := os.Stat(dir)
		switch {
		case err != nil:
			return fieldErr(field, "%s: %v", dir, unwrapPath(err))
		case !st.IsDir():
			return fieldErr(field, "%s is not a directory", dir)
		}
		return nil
	}
	if c.Root != "" {
		r, err := filepath.Abs(c.Root)
		if err != nil {
			return fieldErr("Config.Root", "%s: %v", c.Root, err)
		}
		c.Root = r
		if err := isDir("Config.Root", r); err != nil {
			return err
		}
		need := []string{"sys/fs/cgroup"}
		if c.MountProc {
			need = append(need, "proc")
		}
		for _, d := range need {
			if st, err := os.Stat(filepath.Join(r, d)); err != nil || !st.IsDir() {
				return fieldErr("Config.Root", "%s has no %s directory, where the level mounts its own (create it)", r, d)
			}
		}
	}
	if c.WorkDir == "" {
		return nil
	}
	if c.Root == "" {
		w, err := filepath.Abs(c.WorkDir)
		if err != nil {
			return fieldErr("Config.WorkDir", "%s: %v", c.WorkDir, err)
		}
		c.WorkDir = w
		return isDir("Config.WorkDir", w)
	}
	// In the new root, where a relative path starts at its /.
	c.WorkDir = filepath.Join("/", c.WorkDir)
	return isDir("Config.WorkDir", filepath.Join(c.Root, c.WorkDir))
}

// unwrapPath is a *PathError's errno alone ("no such file or
// directory"), the caller naming the path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// timeNSOnExec reports whether the kernel moves a process into its time
// namespace for children on execve: Linux 6.2 on ("fs/exec: switch
// timens when a task gets a new mm"). Before, only forked children
// entered it, and a Go process could not even start a thread after
// unshare(CLONE_NEWTIME).
func timeNSOnExec() bool {
	if failpoint.At("kernel before 6.2") != nil {
		return false // tests of the refusal, on any kernel
	}
	var major, minor int
	if _, err := fmt.Sscanf(kernelRelease(), "%d.%d", &major, &minor); err != nil {
		return true // unknown: let the kernel say
	}
	return major > 6 || major == 6 && minor >= 2
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// validateIDs checks that CMD's ids exist where it runs: with a user
// namespace, in the level's maps (after validateUser set them).
func (c *Config) validateIDs() error {
	for _, id := range []struct {
		field, flagWord string
		v               *int
		m               IDMap
	}{{"Config.SetUID", "uid", c.SetUID, c.UIDMap}, {"Config.SetGID", "gid", c.SetGID, c.GIDMap}} {
		switch {
		case id.v == nil:
		case *id.v < 0 || *id.v > 1<<32-2:
			return fieldErr(id.field, "invalid %s %d", id.flagWord, *id.v)
		case c.User && (*id.v < id.m.Inner || *id.v >= id.m.Inner+id.m.Count):
			return fieldErr(id.field, "%s %d is not mapped in the level's user namespace (it maps %d-%d)", id.flagWord, *id.v, id.m.Inner, id.m.Inner+id.m.Count-1)
		}
	}
	return nil
}

func (c *Config) validateLeaf() error {
	switch {
	case c.NoLeaf && c.Leaf != "":
		return fieldErr("Config.Leaf", "cannot be combined with Config.NoLeaf")
	case !c.NoLeaf && c.Leaf == "":
		c.Leaf = DefaultLeaf
	}
	if c.Leaf != "" {
		if err := ValidateName(c.Leaf); err != nil {
			return &FieldError{"Config.Leaf", err}
		}
	}
	return nil
}

func cleanParent(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q must be relative to the launcher's cgroup", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q escapes the launcher's cgroup", p)
	}
	for _, e := range strings.Split(c, "/") {
		if e == cgroup.InnerName {
			// A parent named like an inner cgroup could put a level's
			// cgroups inside another level's namespace root.
			return "", fmt.Errorf("%q: a path element may not be %q", p, cgroup.InnerName)
		}
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

func validateLimits(l *cgroup.Limits) error {
	if l.Memory < 0 {
		return fieldErr("Limits.Memory", "invalid size %d", l.Memory)
	}
	if l.CPUs < 0 {
		return fieldErr("Limits.CPUs", "invalid CPU quota %g", l.CPUs)
	}
	if l.CPUWeight != 0 && (l.CPUWeight < 1 || l.CPUWeight > 10000) {
		return fieldErr("Limits.CPUWeight", "invalid weight %d (use 1 to 10000)", l.CPUWeight)
	}
	if l.PidsMax < 0 {
		return fieldErr("Limits.PidsMax", "invalid count %d", l.PidsMax)
	}
	for _, list := range []struct {
		field string
		v     *string
	}{{"Limits.CpusetCPUs", &l.CpusetCPUs}, {"Limits.CpusetMems", &l.CpusetMems}} {
		if *list.v == "" {
			continue
		}
		n, err := ParseList(*list.v)
		if err != nil {
			return &FieldError{list.field, err}
		}
		*list.v = n
	}
	for _, s := range l.Set {
		if _, _, err := ParseSetting(s.File + "=" + s.Value); err != nil {
			return &FieldError{"Limits.Set", err}
		}
	}
	return nil
}

func generateName() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return "level-" + hex.EncodeToString(b)
}

// Limits are a level's resource limits (see cgroup.Limits); aliased here
// so that API users need only this package.
type Limits = cgroup.Limits

// Setting is one extra controller file to write (--set FILE=VALUE).
type Setting = cgroup.Setting
