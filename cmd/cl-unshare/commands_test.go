package main

import (
	"os"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/level"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func TestCommandAt(t *testing.T) {
	var code exitCode
	cmds := commands(&code)
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"list"}, true},
		{[]string{"ps", "--json"}, true},
		{[]string{"--run-dir", "/x", "gc"}, true},
		{[]string{"--run-dir=/x", "inspect", "a"}, true},
		{[]string{"--", "list"}, false},
		{[]string{"--memory", "1G", "--", "list"}, false},
		{[]string{"--name", "list", "ls"}, false}, // "list" is --name's value
		{[]string{"ls", "-l"}, false},
		{[]string{}, false},
		{[]string{"-h"}, false},
	} {
		if got := commandAt(append([]string{"cl-unshare"}, c.args...), cmds) >= 0; got != c.want {
			t.Errorf("commandAt(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{"KILL": unix.SIGKILL, "SIGTERM": unix.SIGTERM, "term": unix.SIGTERM, "9": unix.SIGKILL, "usr1": unix.SIGUSR1} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"BOGUS", "", "0", "99", "SIG"} {
		if _, err := parseSignal(in); err == nil {
			t.Errorf("parseSignal(%q) accepted", in)
		}
	}
}

// The systemd unit in README.md must parse: its ExecStart is what users copy.
func TestReadmeUnitExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "ExecStart=") {
			line = strings.TrimPrefix(l, "ExecStart=")
		}
	}
	args := strings.Fields(line)
	if len(args) < 3 || !strings.HasSuffix(args[0], "cl-unshare") {
		t.Fatalf("no ExecStart=cl-unshare line in README.md: %q", line)
	}
	var cfg level.Config
	var exec bool
	app := &cli.App{Flags: flags(), Action: func(c *cli.Context) error {
		exec = c.Bool("exec")
		var err error
		cfg, err = configFrom(c)
		return err
	}}
	if err := app.Run(optionalValues(args)); err != nil {
		t.Fatalf("README's ExecStart does not parse: %v", err)
	}
	if !exec || cfg.Name != "web" || cfg.Limits.Memory != 512<<20 || cfg.Limits.PidsMax != 200 || cfg.Argv[0] != "/usr/bin/web" {
		t.Errorf("README's ExecStart parsed to exec=%v %+v", exec, cfg)
	}
}
