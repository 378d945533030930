package main

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/level"
	"github.com/urfave/cli/v2"
)

// parse runs args (without argv[0]) through a bare app with our flags and
// returns the config configFrom makes of them.
func parse(t *testing.T, args ...string) (level.Config, error) {
	t.Helper()
	var cfg level.Config
	var err error
	called := false
	app := &cli.App{
		Flags: flags(),
		Action: func(c *cli.Context) error {
			called = true
			cfg, err = configFrom(c)
			return err
		},
		Writer:    io.Discard,
		ErrWriter: io.Discard,
	}
	runErr := app.Run(append([]string{"cl-unshare"}, args...))
	if !called {
		t.Fatalf("%q: the action did not run (app.Run: %v)", args, runErr)
	}
	if runErr != err {
		t.Fatalf("%q: app.Run returned %v, the action %v", args, runErr, err)
	}
	return cfg, err
}

// parseReal does the same through newApp, with only its Action replaced
// (so nothing is started): the app's own settings are what is tested.
func parseReal(t *testing.T, args ...string) (level.Config, error) {
	t.Helper()
	var cfg level.Config
	var err error
	called := false
	var code exitCode
	app := newApp(&code)
	app.Action = func(c *cli.Context) error {
		called = true
		cfg, err = configFrom(c)
		return err
	}
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	runErr := app.Run(append([]string{"cl-unshare"}, args...))
	if !called {
		t.Fatalf("%q: the action did not run (app.Run: %v)", args, runErr)
	}
	return cfg, err
}

func TestFlagsToConfig(t *testing.T) {
	args := []string{"--memory", "512M", "--cpus", "1.5", "--cpu-weight", "100",
		"--cpuset-cpus", "0-1", "--cpuset-mems", "0", "--pids-max", "64",
		"--set", "memory.high=1G", "--set", "pids.max=9", "--name", "web", "--", "make", "-j4"}
	want := level.Config{
		Name:   "web",
		Argv:   []string{"make", "-j4"},
		RunDir: level.DefaultRunDir,
		Leaf:   level.DefaultLeaf,
		Limits: level.Limits{
			Memory:     512 << 20,
			CPUs:       1.5,
			CPUWeight:  100,
			CpusetCPUs: "0-1",
			CpusetMems: "0",
			PidsMax:    64,
			Set:        []level.Setting{{File: "memory.high", Value: "1G"}, {File: "pids.max", Value: "9"}},
		},
	}
	for name, p := range map[string]func(*testing.T, ...string) (level.Config, error){"bare": parse, "newApp": parseReal} {
		cfg, err := p(t, args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("%s: config =\n%+v\nwant\n%+v", name, cfg, want)
		}
	}
}

func TestFlagsOtherForms(t *testing.T) {
	cfg, err := parse(t, "--memory=1G", "--run-dir", "/tmp/levels/", "--cgroup-parent", "ci/jobs/",
		"--cpuset-cpus", "00-03,6", "-name", "x1", "true")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.Memory != 1<<30 || cfg.RunDir != "/tmp/levels" || cfg.CgroupParent != "ci/jobs" ||
		cfg.Limits.CpusetCPUs != "0-3,6" || cfg.Name != "x1" || !reflect.DeepEqual(cfg.Argv, []string{"true"}) {
		t.Errorf("config = %+v", cfg)
	}
	// The last of a repeated single-value flag wins.
	cfg, err = parse(t, "--memory", "1K", "--memory", "2K", "true")
	if err != nil || cfg.Limits.Memory != 2048 {
		t.Errorf("repeated --memory: %d, %v", cfg.Limits.Memory, err)
	}
}

func TestDefaultCommand(t *testing.T) {
	t.Setenv("SHELL", "/usr/bin/zsh")
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Argv, []string{"/usr/bin/zsh"}) {
		t.Errorf("Argv = %q, want [$SHELL]", cfg.Argv)
	}
	if err := level.ValidateName(cfg.Name); err != nil || cfg.Name == "" {
		t.Errorf("generated name %q: %v", cfg.Name, err)
	}
	if cfg.RunDir != level.DefaultRunDir || cfg.CgroupParent != "" {
		t.Errorf("config = %+v", cfg)
	}
	if !reflect.DeepEqual(cfg.Limits, level.Limits{}) {
		t.Errorf("Limits = %+v, want none", cfg.Limits)
	}

	cfg, err = parse(t, "--")
	if err != nil || !reflect.DeepEqual(cfg.Argv, []string{"/usr/bin/zsh"}) {
		t.Errorf("\"--\" alone: Argv = %q, %v", cfg.Argv, err)
	}

	t.Setenv("SHELL", "")
	cfg, err = parse(t, "--name", "x")
	if err != nil || !reflect.DeepEqual(cfg.Argv, []string{"/bin/sh"}) {
		t.Errorf("SHELL empty: Argv = %q, %v; want [/bin/sh]", cfg.Argv, err)
	}
}

func TestCommandArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		argv []string
	}{
		{[]string{"--", "list"}, []string{"list"}},
		{[]string{"list"}, []string{"list"}},
		{[]string{"sh", "-c", "x", "--memory", "1"}, []string{"sh", "-c", "x", "--memory", "1"}},
		{[]string{"ls", "-l"}, []string{"ls", "-l"}},
		{[]string{"--", "--memory", "1"}, []string{"--memory", "1"}},
		{[]string{"--", "ls", "--", "x"}, []string{"ls", "--", "x"}},
		{[]string{"--name", "n", "--", "-weird"}, []string{"-weird"}},
	} {
		for name, p := range map[string]func(*testing.T, ...string) (level.Config, error){"bare": parse, "newApp": parseReal} {
			cfg, err := p(t, c.args...)
			if err != nil {
				t.Errorf("%s %q: %v", name, c.args, err)
				continue
			}
			if !reflect.DeepEqual(cfg.Argv, c.argv) {
				t.Errorf("%s %q: Argv = %q, want %q", name, c.args, cfg.Argv, c.argv)
			}
			if cfg.Limits.Memory != 0 {
				t.Errorf("%s %q: a flag after the command was parsed (Memory %d)", name, c.args, cfg.Limits.Memory)
			}
		}
	}
	// The real app has no subcommands: "help" and "h" are programs.
	for _, args := range [][]string{{"help"}, {"--", "help"}, {"h", "x"}} {
		cfg, err := parseReal(t, args...)
		want := args
		if args[0] == "--" {
			want = args[1:]
		}
		if err != nil || !reflect.DeepEqual(cfg.Argv, want) {
			t.Errorf("newApp %q: Argv = %q, %v; want %q", args, cfg.Argv, err, want)
		}
	}
}

func TestSetValueWithComma(t *testing.T) {
	cfg, err := parseReal(t, "--set", "cpuset.cpus=0-3,6", "--set", "cpuset.mems=0,1", "true")
	if err != nil {
		t.Fatalf("--set with a list value: %v", err)
	}
	want := []level.Setting{{File: "cpuset.cpus", Value: "0-3,6"}, {File: "cpuset.mems", Value: "0,1"}}
	if !reflect.DeepEqual(cfg.Limits.Set, want) {
		t.Errorf("Set = %+v, want %+v", cfg.Limits.Set, want)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
		msg  string // the whole message, or its start when it ends in "..."
	}{
		{[]string{"--memory", "10XB"}, "--memory", `--memory: invalid size "10XB" (use a number with K, M, G or T)`},
		{[]string{"--memory", ""}, "--memory", `--memory: invalid size ""...`},
		{[]string{"--memory", "0"}, "--memory", `--memory: invalid size "0"...`},
		{[]string{"--cpus", "0"}, "--cpus", `--cpus: invalid CPU quota "0"...`},
		{[]string{"--cpus", "lots"}, "--cpus", `--cpus: invalid CPU quota "lots"...`},
		{[]string{"--cpu-weight", "0"}, "--cpu-weight", `--cpu-weight: invalid weight "0" (use a whole number from 1 to 10000)`},
		{[]string{"--cpu-weight", "10001"}, "--cpu-weight", `--cpu-weight: invalid weight "10001" (use a whole number from 1 to 10000)`},
		{[]string{"--cpu-weight", "1.5"}, "--cpu-weight", `--cpu-weight: invalid weight "1.5"...`},
		{[]string{"--pids-max", "0"}, "--pids-max", `--pids-max: invalid count "0"...`},
		{[]string{"--pids-max", "-1"}, "--pids-max", `--pids-max: invalid count "-1"...`},
		{[]string{"--pids-max", "max"}, "--pids-max", `--pids-max: invalid count "max"...`},
		{[]string{"--cpuset-cpus", "3-1"}, "--cpuset-cpus", `--cpuset-cpus: invalid list "3-1"...`},
		{[]string{"--cpuset-mems", "a"}, "--cpuset-mems", `--cpuset-mems: invalid list "a"...`},
		{[]string{"--set", "memory.high"}, "--set", `--set: invalid setting "memory.high"...`},
		{[]string{"--set", "../../x.y=1"}, "--set", `--set: invalid controller file "../../x.y"...`},
		{[]string{"--name", "-x"}, "--name", `--name: invalid name "-x"...`},
		{[]string{"--name", strings.Repeat("n", 65)}, "--name", `--name: invalid name...`},
		{[]string{"--run-dir", "relative"}, "--run-dir", `--run-dir: "relative" is not an absolute path`},
		{[]string{"--cgroup-parent", "../x"}, "--cgroup-parent", `--cgroup-parent: "../x" escapes the launcher's cgroup`},
		{[]string{"--cgroup-parent", "/abs"}, "--cgroup-parent", `--cgroup-parent: "/abs" must be relative...`},
		// The first bad flag is reported.
		{[]string{"--pids-max", "0", "--memory", "x"}, "--memory", `--memory: invalid size "x"...`},
	} {
		args := append(c.args, "true")
		_, err := parse(t, args...)
		if err == nil {
			t.Errorf("%q: no error", c.args)
			continue
		}
		// The library names the field; the command line, its flag.
		var fe *level.FieldError
		if !errors.As(err, &fe) || flagOf[fe.Field] != c.flag {
			t.Errorf("%q: err = %v (%T), want a FieldError for the field of %s", c.args, err, err, c.flag)
		} else if !strings.HasPrefix(err.Error(), fe.Field+": ") {
			t.Errorf("%q: error %q does not start with its field %s", c.args, err, fe.Field)
		}
		msg := flagsIn(err.Error())
		if prefix, ok := strings.CutSuffix(c.msg, "..."); ok {
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("%q: error %q, want it to start with %q", c.args, msg, prefix)
			}
		} else if msg != c.msg {
			t.Errorf("%q: error %q, want %q", c.args, msg, c.msg)
		}
	}
}

func TestRunUsageError(t *testing.T) {
	for _, args := range [][]string{{"--bogus"}, {"-x", "ls"}, {"--name"}, {"--memory"}} {
		var buf bytes.Buffer
		code := run(append([]string{"cl-unshare"}, args...), &buf)
		if code != 125 {
			t.Errorf("%q: exit code %d, want 125", args, code)
		}
		out := buf.String()
		if !strings.HasPrefix(out, "cl-unshare: ") || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("%q: stderr = %q, want exactly one line starting \"cl-unshare: \"", args, out)
		}
	}
}

func TestRunFlagError(t *testing.T) {
	// Fails in configFrom, before anything is started.
	var buf bytes.Buffer
	code := run([]string{"cl-unshare", "--memory", "10XB", "--", "true"}, &buf)
	if code != 125 {
		t.Errorf("exit code %d, want 125", code)
	}
	if want := "cl-unshare: --memory: invalid size \"10XB\" (use a number with K, M, G or T)\n"; buf.String() != want {
		t.Errorf("stderr = %q, want %q", buf.String(), want)
	}
}

func TestFlagsDefined(t *testing.T) {
	want := []string{"name", "cgroup-parent", "run-dir", "memory", "cpus", "cpu-weight", "cpuset-cpus", "cpuset-mems", "pids-max", "set",
		"exec", "ready-fd", "json-status-fd", "kill-child", "pid", "p", "mount-proc", "init",
		"net", "n", "uts", "u", "hostname", "domainname", "ipc", "i", "time", "T", "monotonic", "boottime", "root", "R", "wd", "w", "propagation", "setuid", "S", "setgid", "G",
		"user", "U", "map-root-user", "r", "map-user", "map-group", "map-current-user", "c", "keep-caps", "map-users", "setgroups", "map-groups", "leaf", "no-leaf", "mirror-max", "timeout", "kill-after", "proc-view", "oom-group", "stats"}
	var got []string
	for _, f := range flags() {
		got = append(got, f.Names()...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flags = %q, want %q", got, want)
	}
	// isCommand must know which options take no value, or the word after
	// one would be taken for its value.
	for _, f := range flags() {
		_, isBool := f.(*cli.BoolFlag)
		if g, ok := f.(*cli.GenericFlag); ok {
			_, isBool = g.Value.(*nsValue) // --net or --net=FILE: one word either way
		}
		for _, n := range f.Names() {
			dash := "--" + n
			if len(n) == 1 {
				dash = "-" + n
			}
			if isBool != boolOptions[dash] {
				t.Errorf("%s: boolean flag %v, in boolOptions %v", dash, isBool, boolOptions[dash])
			}
		}
	}
}

// --version and -V (unshare's spelling) print the build's version, on one
// line, and start nothing.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-V"} {
		var code exitCode
		app := newApp(&code)
		ran := false
		app.Action = func(*cli.Context) error { ran = true; return nil }
		var out strings.Builder
		app.Writer, app.ErrWriter = &out, io.Discard
		if err := app.Run([]string{"cl-unshare", arg}); err != nil || ran {
			t.Errorf("%s: %v, action ran %v", arg, err, ran)
		}
		if got, want := out.String(), "cl-unshare "+buildVersion()+"\n"; got != want || buildVersion() == "" {
			t.Errorf("%s printed %q, want %q", arg, got, want)
		}
	}
	version = "v9.9-test"
	defer func() { version = "" }()
	if v := buildVersion(); v != "v9.9-test" {
		t.Errorf("with -X main.version: %q", v)
	}
}
