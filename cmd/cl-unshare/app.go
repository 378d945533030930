package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cl-unshare/cl-unshare/internal/resident"
	"github.com/cl-unshare/cl-unshare/level"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

const usageText = `cl-unshare [options] [--] [CMD [ARG...]]

   Starts CMD (default: $SHELL, or /bin/sh) in a new level: its own cgroup in
   every hierarchy, a cgroup namespace rooted there, a mount namespace, and a
   fresh /sys/fs/cgroup mirrored to the host at RUN/levels/NAME/cgroup.

EXIT STATUS:
   CMD's exit status, or 128+N if CMD was killed by signal N;
   125 if cl-unshare itself failed; 126 if CMD could not be executed;
   127 if CMD was not found.`

// forwarded are the signals the supervisor passes on to CMD.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH}

func newApp(code *exitCode) *cli.App {
	return &cli.App{
		Name:            "cl-unshare",
		Version:         buildVersion(),
		Usage:           "run a command in its own level of cgroups and namespaces",
		UsageText:       usageText,
		HideHelpCommand: true,
		// --set cpuset.cpus=0-3,6 is one value, not two.
		DisableSliceFlagSeparator: true,
		Flags:                     flags(),
		// Stop at CMD: its own options are not ours.
		Action: func(c *cli.Context) error {
			if c.App.Metadata["dry"] != nil {
				_, err := parseConfig(c) // README's examples: only parsed
				return err
			}
			cfg, err := configFrom(c)
			if err != nil {
				return err
			}
			if level.NeedsRootless() {
				if c.Bool("exec") {
					return &level.FieldError{Field: "ExecInPlace", Err: errors.New("needs root: without it a launcher stays on the host, outside the level, to hold its user namespace (leave --exec out)")}
				}
				n, err := level.StartRootless(cfg, os.Args)
				*code = exitCode(n)
				return err
			}
			if c.Bool("exec") {
				if c.Bool("stats") {
					return &level.FieldError{Field: "ExecInPlace", Err: errors.New("cannot be combined with --stats, which needs a supervisor")}
				}
				return level.ExecInPlace(cfg) // returns only on failure
			}
			n, err := supervise(cfg, c.Bool("stats"))
			*code = exitCode(n)
			return err
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "level `NAME` (default: generated)"},
		&cli.StringFlag{Name: "cgroup-parent", Usage: "make the level's cgroups under `PATH`, relative to cl-unshare's own cgroup"},
		&cli.StringFlag{Name: "run-dir", Value: level.CallerRunDir(), DefaultText: level.DefaultRunDir + ", without root $XDG_RUNTIME_DIR/cl-unshare", Usage: "host-visible `DIR` for level mirrors"},
		&cli.StringFlag{Name: "memory", Usage: "memory limit `SIZE` (K, M, G, T)"},
		&cli.StringFlag{Name: "cpus", Usage: "CPU quota in `N` CPUs (fractions allowed)"},
		&cli.StringFlag{Name: "cpu-weight", Usage: "CPU weight `N`, 1 to 10000 (cpu.shares on cgroup v1)"},
		&cli.StringFlag{Name: "cpuset-cpus", Usage: "allowed CPUs, a `LIST` such as 0-3,6"},
		&cli.StringFlag{Name: "cpuset-mems", Usage: "allowed memory nodes, a `LIST`"},
		&cli.StringFlag{Name: "pids-max", Usage: "maximum number of tasks `N`"},
		&cli.StringSliceFlag{Name: "set", Usage: "write `FILE=VALUE` to any controller file of the level (repeatable)"},
		&cli.BoolFlag{Name: "exec", Usage: "set the level up, then become CMD with the same PID (for init systems; no supervisor)"},
		&cli.IntFlag{Name: "ready-fd", Usage: "close `FD` once the level is fully set up"},
		&cli.IntFlag{Name: "json-status-fd", Usage: "write JSON lines to `FD`: one when the level is ready, one when CMD exits"},
		&cli.StringFlag{Name: "kill-child", Usage: "if the supervisor dies, send `SIG` to CMD (--kill-child alone: KILL)"},
		nsFlag("pid", "p", "a new PID namespace: CMD is its PID 1 (=`FILE`: kept on FILE while the level runs)"),
		&cli.BoolFlag{Name: "mount-proc", Usage: "mount a fresh /proc for the PID namespace (with --pid)"},
		&cli.BoolFlag{Name: "init", Usage: "with --pid: run cl-unshare as PID 1, to reap orphans and pass signals on; CMD runs as its child"},
		nsFlag("net", "n", "a new network namespace, with only the loopback interface, up (unshare -n leaves it down) (=`FILE`: kept on FILE while the level runs)"),
		nsFlag("uts", "u", "a new UTS namespace (its own hostname and domain name) (=`FILE`: kept on FILE while the level runs)"),
		&cli.StringFlag{Name: "hostname", Usage: "with --uts: the level's hostname `NAME`"},
		&cli.StringFlag{Name: "domainname", Usage: "with --uts: the level's NIS domain name `NAME`"},
		nsFlag("ipc", "i", "a new IPC namespace (System V IPC, POSIX message queues) (=`FILE`: kept on FILE while the level runs)"),
		nsFlag("time", "T", "a new time namespace (Linux 6.2 on): its own monotonic and boot-time clocks (=`FILE`: kept on FILE while the level runs)"),
		&cli.StringFlag{Name: "monotonic", Usage: "with --time: offset CLOCK_MONOTONIC by `SECS` (may be negative)"},
		&cli.StringFlag{Name: "boottime", Usage: "with --time: offset CLOCK_BOOTTIME, and uptime, by `SECS`"},
		&cli.StringFlag{Name: "root", Aliases: []string{"R"}, Usage: "run CMD with `DIR` as its / (pivot_root; DIR needs sys/fs/cgroup, and proc with --mount-proc)"},
		&cli.StringFlag{Name: "wd", Aliases: []string{"w"}, Usage: "start CMD in `DIR` (in the new root with --root, / there by default)"},
		&cli.StringFlag{Name: "propagation", Usage: "mount propagation `MODE` of the level's /: slave (default), shared, private or unchanged"},
		&cli.StringFlag{Name: "setuid", Aliases: []string{"S"}, Usage: "run CMD as `UID` (of the level's user namespace with --user), set once the level is set up"},
		&cli.StringFlag{Name: "setgid", Aliases: []string{"G"}, Usage: "run CMD as `GID`, without supplementary groups"},
		nsFlag("user", "U", "a new user namespace (root mapped to --map-users, default auto) (=`FILE`: kept on FILE while the level runs)"),
		&cli.BoolFlag{Name: "map-root-user", Aliases: []string{"r"}, Usage: "map root to the caller's uid and gid, as unshare -r (implies --user)"},
		&cli.StringFlag{Name: "map-user", Usage: "map the caller's uid to `UID` in the level, as unshare --map-user (implies --user; the level's root must be mapped, so UID is 0 while cl-unshare runs as root)"},
		&cli.StringFlag{Name: "map-group", Usage: "map the caller's gid to `GID` in the level, as unshare --map-group (implies --user)"},
		&cli.BoolFlag{Name: "map-current-user", Aliases: []string{"c"}, Usage: "map the caller's uid and gid to the same ids in the level, as unshare -c (implies --user)"},
		&cli.BoolFlag{Name: "keep-caps", Usage: "with --user and --setuid: CMD keeps the capabilities it has in the level's user namespace (as ambient ones), as unshare --keep-caps"},
		&cli.StringFlag{Name: "map-users", Usage: "`INNER:OUTER:COUNT` uid map (or unshare's OUTER,INNER,COUNT), or auto (root's /etc/subuid range, else 0:100000:65536; for a user, their id then their range)"},
		&cli.StringFlag{Name: "setgroups", Usage: "with --user: `allow|deny` setgroups(2) in the level (default deny), as unshare --setgroups"},
		&cli.StringFlag{Name: "map-groups", Usage: "`INNER:OUTER:COUNT` gid map, or auto (default: as --map-users)"},
		&cli.StringFlag{Name: "leaf", Usage: "on cgroup v2, start the level's processes in `NAME` below its root, which then hands its controllers down (default init)"},
		&cli.BoolFlag{Name: "no-leaf", Usage: "on cgroup v2, keep the level's processes in its root (which then cannot enable controllers for children)"},
		&cli.StringFlag{Name: "mirror-max", Usage: "with --user: stop the level if it has more than `N` mounts under its /sys/fs/cgroup and run directory (default 1024)"},
		&cli.StringFlag{Name: "timeout", Usage: "stop the level once it has run `DUR` (30s, 5m): SIGTERM, then SIGKILL after --kill-after; exit 124, as timeout(1)"},
		&cli.StringFlag{Name: "kill-after", Usage: "with --timeout: SIGKILL what is left `DUR` after the SIGTERM (default 10s)"},
		&cli.BoolFlag{Name: "proc-view", Usage: "show CMD a /proc/cpuinfo, stat, meminfo, swaps, uptime, loadavg and /sys/devices/system/cpu/online that follow its cgroup's limits (FUSE, as lxcfs)"},
		&cli.BoolFlag{Name: "oom-group", Usage: "an OOM kill in the level kills all of it at once (cgroup2 memory.oom.group, as systemd's OOMPolicy=kill)"},
		&cli.BoolFlag{Name: "stats", Usage: "when CMD ends, print what the level used (CPU time, memory peak, tasks peak, IO) on one line of stderr"},
	}
}

// configFrom turns the command line into a checked level.Config; each
// error names its flag.
func configFrom(c *cli.Context) (level.Config, error) {
	cfg, err := parseConfig(c)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// parseConfig is configFrom without the checks against this host.
func parseConfig(c *cli.Context) (level.Config, error) {
	cfg := level.Config{
		Name:         c.String("name"),
		CgroupParent: c.String("cgroup-parent"),
		RunDir:       c.String("run-dir"),
		Argv:         c.Args().Slice(),
	}
	if c.IsSet("name") && cfg.Name == "" {
		// A script's --name "$UNSET": a generated name would hide the bug.
		return cfg, &level.FieldError{Field: "Config.Name", Err: errors.New(`empty name (leave --name out for a generated one)`)}
	}
	if len(cfg.Argv) == 0 {
		cfg.Argv = []string{defaultShell()}
	}
	cfg.ReadyFD, cfg.StatusFD = c.Int("ready-fd"), c.Int("json-status-fd")
	cfg.Leaf, cfg.NoLeaf = c.String("leaf"), c.Bool("no-leaf")
	if c.IsSet("leaf") && cfg.Leaf == "" {
		return cfg, &level.FieldError{Field: "Config.Leaf", Err: errors.New("empty name (use --no-leaf to keep processes in the level's root)")}
	}
	cfg.PID, cfg.MountProc, cfg.Init = c.Bool("pid"), c.Bool("mount-proc"), c.Bool("init")
	cfg.Net, cfg.UTS, cfg.IPC = c.Bool("net"), c.Bool("uts"), c.Bool("ipc")
	cfg.Hostname, cfg.Domainname = c.String("hostname"), c.String("domainname")
	cfg.Root, cfg.WorkDir, cfg.Propagation = c.String("root"), c.String("wd"), c.String("propagation")
	cfg.Time = c.Bool("time")
	for _, ns := range nsFlagNames {
		if f := nsFile(c, ns); f != "" {
			if cfg.Persist == nil {
				cfg.Persist = map[string]string{}
			}
			cfg.Persist[ns] = f
		}
	}
	for _, f := range []struct {
		flag string
		dst  *time.Duration
	}{{"monotonic", &cfg.Monotonic}, {"boottime", &cfg.Boottime}} {
		if !c.IsSet(f.flag) {
			continue
		}
		secs, err := strconv.ParseFloat(c.String(f.flag), 64)
		if err != nil || math.IsNaN(secs) || math.Abs(secs) > 1<<32 {
			return cfg, fmt.Errorf("--%s: invalid offset %q (use seconds, such as 86400 or -3600)", f.flag, c.String(f.flag))
		}
		*f.dst = time.Duration(secs * float64(time.Second))
	}
	for _, f := range []string{"root", "wd", "propagation"} {
		if c.IsSet(f) && c.String(f) == "" {
			return cfg, fmt.Errorf("--%s: empty value (leave the option out, or give one)", f)
		}
	}
	switch v := c.String("setgroups"); v {
	case "allow":
		cfg.AllowSetgroups = true
	case "deny", "":
		if c.IsSet("setgroups") && !c.Bool("user") && !c.Bool("map-root-user") {
			return cfg, &level.FieldError{Field: "Config.AllowSetgroups", Err: errors.New("needs --user")}
		}
	default:
		return cfg, fmt.Errorf("--setgroups: invalid value %q (use allow or deny)", v)
	}
	for _, f := range []struct {
		flag string
		dst  **int
	}{{"setuid", &cfg.SetUID}, {"setgid", &cfg.SetGID}} {
		if !c.IsSet(f.flag) {
			continue
		}
		n, err := strconv.Atoi(c.String(f.flag))
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("--%s: invalid id %q (use a number, such as 1000)", f.flag, c.String(f.flag))
		}
		*f.dst = &n
	}
	cfg.Limits.OOMGroup = c.Bool("oom-group")
	cfg.User = c.Bool("user") || c.Bool("map-root-user")
	if c.Bool("map-root-user") {
		cfg.UIDMap = level.IDMap{Inner: 0, Outer: os.Geteuid(), Count: 1}
		cfg.GIDMap = level.IDMap{Inner: 0, Outer: os.Getegid(), Count: 1}
	}
	// unshare's one-id maps of the caller's own ids.
	if c.Bool("map-current-user") {
		cfg.User = true
		cfg.UIDMap = level.IDMap{Inner: os.Geteuid(), Outer: os.Geteuid(), Count: 1}
		cfg.GIDMap = level.IDMap{Inner: os.Getegid(), Outer: os.Getegid(), Count: 1}
	}
	for _, f := range []struct {
		flag, field string
		dst         *level.IDMap
		own         int
	}{{"map-user", "Config.UIDMap", &cfg.UIDMap, os.Geteuid()}, {"map-group", "Config.GIDMap", &cfg.GIDMap, os.Getegid()}} {
		if !c.IsSet(f.flag) {
			continue
		}
		n, err := strconv.Atoi(c.String(f.flag))
		if err != nil || n < 0 || n > 1<<32-2 {
			return cfg, fmt.Errorf("--%s: invalid id %q (use a number, such as 0)", f.flag, c.String(f.flag))
		}
		if n != 0 {
			// One id is mapped, and the level's root must be it.
			return cfg, fmt.Errorf("--%s: %d would leave the level's root unmapped, and cl-unshare sets the level up as its root: map the caller to 0 (or use --user %s %d to run CMD as %d)", f.flag, n, map[string]string{"map-user": "--setuid", "map-group": "--setgid"}[f.flag], n, n)
		}
		cfg.User, *f.dst = true, level.IDMap{Inner: n, Outer: f.own, Count: 1}
	}
	cfg.KeepCaps = c.Bool("keep-caps")
	cfg.ProcView = c.Bool("proc-view")
	for _, p := range valueFlags {
		if v := c.String(p.flag); c.IsSet(p.flag) {
			if err := p.parse(&cfg, v); err != nil {
				return cfg, &level.FieldError{Field: p.field, Err: err}
			}
		}
	}
	for _, s := range c.StringSlice("set") {
		file, value, err := level.ParseSetting(s)
		if err != nil {
			return cfg, &level.FieldError{Field: "Limits.Set", Err: err}
		}
		cfg.Limits.Set = append(cfg.Limits.Set, level.Setting{File: file, Value: value})
	}
	return cfg, nil
}

// valueFlags parses each flag that takes a value into its field (flagOf
// the other way round), which an error names.
var valueFlags = []struct {
	flag, field string
	parse       func(cfg *level.Config, v string) error
}{
	{"memory", "Limits.Memory", func(cfg *level.Config, v string) (err error) { cfg.Limits.Memory, err = level.ParseSize(v); return }},
	{"cpus", "Limits.CPUs", func(cfg *level.Config, v string) (err error) { cfg.Limits.CPUs, err = level.ParseCPUs(v); return }},
	{"cpu-weight", "Limits.CPUWeight", func(cfg *level.Config, v string) (err error) {
		cfg.Limits.CPUWeight, err = parseUint(v, "weight", 1, 10000)
		return
	}},
	{"pids-max", "Limits.PidsMax", func(cfg *level.Config, v string) error {
		n, err := parseUint(v, "count", 1, 1<<31)
		cfg.Limits.PidsMax = int64(n)
		return err
	}},
	{"cpuset-cpus", "Limits.CpusetCPUs", func(cfg *level.Config, v string) (err error) { cfg.Limits.CpusetCPUs, err = level.ParseList(v); return }},
	{"cpuset-mems", "Limits.CpusetMems", func(cfg *level.Config, v string) (err error) { cfg.Limits.CpusetMems, err = level.ParseList(v); return }},
	{"mirror-max", "Config.MirrorMax", func(cfg *level.Config, v string) error {
		n, err := parseUint(v, "count", 1, 1<<20)
		cfg.MirrorMax = int(n)
		return err
	}},
	{"map-users", "Config.UIDMap", func(cfg *level.Config, v string) error { return parseMap(&cfg.UIDMap, v, "/etc/subuid") }},
	{"map-groups", "Config.GIDMap", func(cfg *level.Config, v string) error { return parseMap(&cfg.GIDMap, v, "/etc/subgid") }},
	{"kill-child", "Config.KillSignal", func(cfg *level.Config, v string) (err error) { cfg.KillSignal, err = parseSignal(v); return }},
	{"timeout", "Config.Timeout", func(cfg *level.Config, v string) (err error) { cfg.Timeout, err = parseDuration(v); return }},
	{"kill-after", "Config.KillAfter", func(cfg *level.Config, v string) (err error) { cfg.KillAfter, err = parseDuration(v); return }},
}

// parseMap parses an id map; an empty one leaves the default.
func parseMap(to *level.IDMap, v, subids string) error {
	if v == "" {
		return nil
	}
	m, err := level.ParseIDMap(v, subids)
	if err == nil {
		*to = m
	}
	return err
}

// parseDuration reads a time as timeout(1) and Go do: "30s", "5m",
// "1h30m", or a number of seconds ("90", "0.5"). It must be above 0.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && f < 1e9 {
			d, err = time.Duration(f*float64(time.Second)), nil
		}
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q (use a time above 0 with s, m or h: 30s, 5m, 1h)", s)
	}
	return d, nil
}

func parseUint(s, what string, lo, hi uint64) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("invalid %s %q (use a whole number from %d to %d)", what, s, lo, hi)
	}
	return n, nil
}

func defaultShell() string {
	if s := os.Getenv("SHELL"); s != "" {
		return s
	}
	return "/bin/sh"
}

// process is what the supervisor waits for: a level's command, or a
// command started in a level by exec.
type process interface {
	Signal(os.Signal) error
	Wait() (syscall.WaitStatus, error)
}

// supervise starts the level, forwards signals to CMD until it exits,
// tears the level down and returns CMD's exit code; with stats, it says
// what the level used, as systemd-run --wait does.
func supervise(cfg level.Config, stats bool) (int, error) {
	var l *level.Level
	n, err := superviseWith(func() (process, error) {
		var err error
		l, err = level.Start(cfg)
		return l, err
	})
	if l != nil && l.OOMKills() > 0 {
		limit := "no memory limit of its own"
		if cfg.Limits.Memory > 0 {
			limit = "memory limit " + humanBytes(cfg.Limits.Memory)
		}
		fmt.Fprintf(os.Stderr, "cl-unshare: level %s: %s OOM-killed (%s)\n", l.Name, plural(l.OOMKills(), "process", "processes"), limit)
	}
	if stats && l != nil && l.Spent() != nil {
		fmt.Fprintf(os.Stderr, "cl-unshare: level %s: %s\n", l.Name, spentLine(l.Spent()))
	}
	return n, err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// spentLine says what a level used, leaving out what this host does
// not count.
func spentLine(s *level.Spent) string {
	var parts []string
	if s.CPUUserUsec != nil && s.CPUSystemUsec != nil {
		parts = append(parts, fmt.Sprintf("CPU %.3fs user, %.3fs system", float64(*s.CPUUserUsec)/1e6, float64(*s.CPUSystemUsec)/1e6))
	}
	if s.MemoryPeakBytes != nil {
		parts = append(parts, "memory peak "+humanBytes(*s.MemoryPeakBytes))
	}
	if s.TasksPeak != nil {
		parts = append(parts, fmt.Sprintf("tasks peak %d", *s.TasksPeak))
	}
	if s.IOReadBytes != nil && s.IOWriteBytes != nil {
		parts = append(parts, fmt.Sprintf("IO %s read, %s written", humanBytes(*s.IOReadBytes), humanBytes(*s.IOWriteBytes)))
	}
	if len(parts) == 0 {
		return "no usage counted here"
	}
	return strings.Join(parts, "; ")
}

// humanBytes spells n in the units --memory takes (powers of 1024).
func humanBytes(n int64) string {
	f, unit := float64(n), ""
	for _, u := range []string{"K", "M", "G", "T"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	switch {
	case unit == "":
		return fmt.Sprintf("%dB", n)
	case f == float64(int64(f)):
		return fmt.Sprintf("%d%s", int64(f), unit) // 32M, as --memory 32M
	}
	return fmt.Sprintf("%.1f%s", f, unit)
}

// superviseWith starts a process, forwards signals to it until it exits
// and returns its exit code, or 128+signal.
func superviseWith(start func() (process, error)) (int, error) {
	// Listen before starting, so a signal that arrives during setup is
	// passed on once CMD runs instead of killing us half-way.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	p, err := start()
	if err != nil {
		return exitFailure, err
	}
	// A level that outlives its start gives back what setting up took;
	// one that ends at once never pays for it.
	trim := time.AfterFunc(time.Second, resident.Trim)
	defer trim.Stop()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = p.Signal(s)
			case <-done:
				return
			}
		}
	}()
	ws, err := p.Wait()
	close(done)
	if err != nil {
		return exitFailure, err
	}
	return level.ExitCode(ws), nil
}
