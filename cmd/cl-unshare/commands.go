package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/cl-unshare/cl-unshare/level"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// commands are the management subcommands. They are looked up only when
// the first word after the options is one of them and no "--" came
// before it, so "cl-unshare -- list" always runs a program called list.
func commands(code *exitCode) []*cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON (schema in README.md)"}
	return []*cli.Command{
		{Name: "list", Aliases: []string{"ps"}, Usage: "show the levels you can see, nested ones indented",
			Flags: []cli.Flag{jsonFlag}, Action: listCmd},
		{Name: "inspect", Usage: "show everything about level NAME (PARENT/CHILD for a nested one)", ArgsUsage: "NAME",
			Flags: []cli.Flag{jsonFlag}, Action: inspectCmd},
		{Name: "exec", Usage: "run CMD inside level NAME, as nsenter would", ArgsUsage: "NAME [--] [CMD [ARG...]]",
			Flags:  []cli.Flag{&cli.StringFlag{Name: "cgroup", Usage: "join `SUBPATH` below the level's inner cgroup"}},
			Action: func(c *cli.Context) error { return execCmd(c, code) }},
		{Name: "kill", Usage: "signal every process of level NAME (default SIGKILL, through cgroup.kill)", ArgsUsage: "NAME",
			Flags:  []cli.Flag{&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Value: "KILL", Usage: "`SIG` by name or number"}},
			Action: killCmd},
		{Name: "freeze", Usage: "freeze level NAME and wait until it is frozen", ArgsUsage: "NAME",
			Action: func(c *cli.Context) error { return freezeCmd(c, true) }},
		{Name: "thaw", Usage: "thaw level NAME and wait until it runs", ArgsUsage: "NAME",
			Action: func(c *cli.Context) error { return freezeCmd(c, false) }},
		{Name: "gc", Usage: "remove levels whose supervisor is gone (just NAME..., if given)", ArgsUsage: "[NAME...]", Action: gcCmd},
		{Name: "events", Usage: "write JSON lines about level NAME until it ends: oom, frozen, thawed, usage (--stats), exit", ArgsUsage: "NAME",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "interval", Value: "1s", Usage: "with --stats, a usage sample every `DUR`"},
				&cli.BoolFlag{Name: "stats", Usage: "write what the level uses every --interval"},
			}, Action: eventsCmd},
		{Name: "update", Usage: "change the limits of running level NAME", ArgsUsage: "NAME",
			Flags: limitFlags(), Action: updateCmd},
		{Name: "check", Usage: "report what this host offers and whether a level can start here",
			Flags: []cli.Flag{jsonFlag}, Action: func(c *cli.Context) error { return checkCmd(c, code) }},
		docCommand(flags(), func() []*cli.Command { return commands(code) }),
	}
}

// boolOptions are the global options that take no value.
var boolOptions = map[string]bool{"--exec": true, "--pid": true, "-p": true, "--mount-proc": true,
	"--init": true, "--net": true, "-n": true, "--uts": true, "-u": true, "--ipc": true, "-i": true, "--time": true, "-T": true, "--user": true, "-U": true, "--map-root-user": true, "-r": true, "--map-current-user": true, "-c": true, "--keep-caps": true, "--no-leaf": true, "--stats": true, "--oom-group": true, "--proc-view": true}

func oneName(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: needs exactly one level NAME (see cl-unshare %s --help)", c.Command.Name, c.Command.Name)
	}
	return c.Args().First(), nil
}

// dry reports whether the command line is only being parsed (tests of
// README's examples); it then records what was parsed.
func dry(c *cli.Context, parsed ...string) bool {
	if c.App.Metadata["dry"] == nil {
		return false
	}
	var flags []string
	for _, f := range c.Command.Flags {
		if n := f.Names()[0]; c.IsSet(n) {
			flags = append(flags, n+"="+c.String(n))
		}
	}
	c.App.Metadata["parsed"] = strings.Join(append(append([]string{c.Command.Name}, parsed...), flags...), " ")
	return true
}

func listCmd(c *cli.Context) error {
	if dry(c) {
		return nil
	}
	levels, err := level.List(c.String("run-dir"))
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if c.Bool("json") {
		if levels == nil {
			levels = []level.Info{}
		}
		return printJSON(c.App.Writer, levels)
	}
	w := tabwriter.NewWriter(c.App.Writer, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTATE\tSUPERVISOR\tCMD\tMOUNTS\tOOM\tINNER CGROUP\tLIMITS")
	var walk func([]level.Info, string)
	walk = func(ls []level.Info, indent string) {
		for _, l := range ls {
			if l.Invalid != "" {
				// Where the cgroup would be, why there is none to show.
				fmt.Fprintf(w, "%s%s\t%s\t-\t-\t-\t-\t(%s)\t-\n", indent, l.Name, l.State, l.Invalid)
				continue
			}
			fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", indent, l.Name, l.State, pid(l.SupervisorPID),
				pid(l.CmdPID), l.MirrorMounts, l.OOMKills, l.InnerCgroup, limits(l.Limits))
			walk(l.Levels, indent+"  ")
		}
	}
	walk(levels, "")
	return w.Flush()
}

func pid(p int) string {
	if p == 0 {
		return "-"
	}
	return strconv.Itoa(p)
}

func limits(m map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+strings.ReplaceAll(m[k], " ", "_"))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

func printJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

func inspectCmd(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil || dry(c, name) {
		return err
	}
	i, err := level.Inspect(c.String("run-dir"), name)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", name, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, i)
	}
	w := c.App.Writer
	if i.Invalid != "" {
		fmt.Fprintf(w, "name:        %s\nstate:       %s\ninvalid:     %s\n", i.Name, i.State, i.Invalid)
		return nil
	}
	fmt.Fprintf(w, "name:        %s\nstate:       %s\nsupervisor:  %s\ncmd:         %s %s\n",
		i.Name, i.State, pid(i.SupervisorPID), pid(i.CmdPID), strings.Join(i.Argv, " "))
	for _, h := range slices.Sorted(maps.Keys(i.Cgroups)) {
		fmt.Fprintf(w, "cgroup:      %-14s outer %s, inner %s\n", h, i.Cgroups[h].Outer, i.Cgroups[h].Inner)
	}
	fmt.Fprintf(w, "limits:      %s\n", limits(i.Limits))
	fmt.Fprintf(w, "usage:       memory %d bytes, %d tasks, cpu %d us\n", i.Usage.MemoryBytes, i.Usage.Tasks, i.Usage.CPUMicros)
	fmt.Fprintf(w, "oom kills:   %d\n", i.OOMKills)
	if i.Namespaces != nil {
		fmt.Fprintf(w, "namespaces:  cgroup %d, mnt %d\n", i.Namespaces.Cgroup, i.Namespaces.Mount)
	}
	for _, m := range i.Mirror {
		fmt.Fprintf(w, "mirror:      %s\n", m)
	}
	for _, l := range i.Levels {
		fmt.Fprintf(w, "nested:      %s (%s)\n", l.Name, l.State)
	}
	fmt.Fprintf(w, "enforcement: %s\n", flagsIn(i.Enforcement))
	return nil
}

// parseSignal takes KILL, SIGKILL, kill or 9.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q (use a name such as TERM or a number)", s)
}

func killCmd(c *cli.Context) error {
	sigName, args := c.String("signal"), c.Args().Slice()
	if len(args) != 1 {
		return fmt.Errorf("kill: needs exactly one level NAME (see cl-unshare kill --help)")
	}
	name := args[0]
	sig, err := parseSignal(sigName)
	if err != nil {
		return fmt.Errorf("--signal: %w", err)
	}
	if dry(c, name) {
		return nil
	}
	if err := level.Kill(c.String("run-dir"), name, sig); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	return nil
}

func freezeCmd(c *cli.Context, freeze bool) error {
	name, err := oneName(c)
	if err != nil || dry(c, name) {
		return err
	}
	if err := level.Freeze(c.String("run-dir"), name, freeze); err != nil {
		return fmt.Errorf("%s %s: %w", c.Command.Name, name, err)
	}
	return nil
}

func eventsCmd(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	interval, err := parseDuration(c.String("interval"))
	if err != nil {
		return fmt.Errorf("--interval: %w", err)
	}
	if dry(c, name) {
		return nil
	}
	enc := json.NewEncoder(c.App.Writer)
	if err := level.Events(c.String("run-dir"), name, interval, c.Bool("stats"), func(e level.Event) error { return enc.Encode(e) }); err != nil {
		return fmt.Errorf("events %s: %w", name, err)
	}
	return nil
}

// limitFlags are the start's limit options, which update takes too.
func limitFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range flags() {
		switch f.Names()[0] {
		case "memory", "cpus", "cpu-weight", "cpuset-cpus", "cpuset-mems", "pids-max", "set":
			out = append(out, f)
		}
	}
	return out
}

func updateCmd(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	var cfg level.Config
	for _, p := range valueFlags {
		if v := c.String(p.flag); c.IsSet(p.flag) && strings.HasPrefix(p.field, "Limits.") {
			if err := p.parse(&cfg, v); err != nil {
				return &level.FieldError{Field: p.field, Err: err}
			}
		}
	}
	for _, s := range c.StringSlice("set") {
		file, value, err := level.ParseSetting(s)
		if err != nil {
			return &level.FieldError{Field: "Limits.Set", Err: err}
		}
		cfg.Limits.Set = append(cfg.Limits.Set, level.Setting{File: file, Value: value})
	}
	if dry(c, name) {
		return nil
	}
	if l := cfg.Limits; l.Memory == 0 && l.CPUs == 0 && l.CPUWeight == 0 && l.CpusetCPUs == "" && l.CpusetMems == "" && l.PidsMax == 0 && len(l.Set) == 0 {
		return fmt.Errorf("update: give a limit to change (--memory, --cpus, --cpu-weight, --cpuset-cpus, --cpuset-mems, --pids-max or --set)")
	}
	if err := level.Update(c.String("run-dir"), name, cfg.Limits); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	return nil
}

func gcCmd(c *cli.Context) error {
	if dry(c, c.Args().Slice()...) {
		return nil
	}
	lines, err := level.GC(c.String("run-dir"), c.Args().Slice()...)
	for _, l := range lines {
		fmt.Fprintln(c.App.Writer, l)
	}
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}

func execCmd(c *cli.Context, code *exitCode) error {
	if c.NArg() < 1 {
		return fmt.Errorf("exec: needs a level NAME (see cl-unshare exec --help)")
	}
	name, argv := c.Args().First(), c.Args().Tail()
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		argv = []string{defaultShell()}
	}
	if dry(c, append([]string{name, "--"}, argv...)...) {
		return nil
	}
	cfg := level.JoinConfig{RunDir: c.String("run-dir"), Name: name, Argv: argv, Cgroup: c.String("cgroup")}
	n, err := superviseWith(func() (process, error) {
		p, err := level.Join(cfg)
		if err != nil {
			return nil, fmt.Errorf("exec %s: %w", name, err)
		}
		return p, nil
	})
	*code = exitCode(n)
	return err
}

func checkCmd(c *cli.Context, code *exitCode) error {
	if dry(c) {
		return nil
	}
	r := level.Check()
	r.Enforcement = flagsIn(r.Enforcement)
	for i, p := range r.Problems {
		r.Problems[i] = flagsIn(p)
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, r); err != nil {
			return err
		}
	} else {
		w := c.App.Writer
		fmt.Fprintf(w, "kernel:       %s\nlayout:       %s\n", r.Kernel, r.Layout)
		for _, h := range r.Hierarchies {
			fmt.Fprintf(w, "hierarchy:    %s\n", h)
		}
		for _, f := range slices.Sorted(maps.Keys(r.Features)) {
			fmt.Fprintf(w, "feature:      %-22s %v\n", f, r.Features[f])
		}
		for _, h := range slices.Sorted(maps.Keys(r.Bases)) {
			fmt.Fprintf(w, "levels go:    %-14s under %s\n", h, r.Bases[h])
		}
		for _, h := range r.LeftOut {
			fmt.Fprintf(w, "left out:     %s\n", h)
		}
		fmt.Fprintf(w, "enforcement:  %s\n", r.Enforcement)
		for _, c := range r.Capacity {
			fmt.Fprintf(w, "room:         %d more levels before %s (%d of %d used, %d a level)\n", c.Levels, c.Limit, c.Used, c.Max, c.PerLevel)
		}
		fmt.Fprintf(w, "can start:    %v\n", r.CanStart)
	}
	if !r.CanStart {
		*code = exitFailure
		return fmt.Errorf("check: a level cannot start here: %s", strings.Join(r.Problems, "; "))
	}
	return nil
}
