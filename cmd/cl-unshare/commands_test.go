package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestIsCommand(t *testing.T) {
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
		if got := isCommand(c.args, cmds); got != c.want {
			t.Errorf("isCommand(%q) = %v, want %v", c.args, got, c.want)
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
