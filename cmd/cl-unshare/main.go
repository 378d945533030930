// Command cl-unshare starts a command in a level: its own cgroups, cgroup
// namespace and mount namespace, with a fresh /sys/fs/cgroup mirrored to
// the host. See README.md.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cl-unshare/cl-unshare/level"
	"github.com/urfave/cli/v2"
)

// exitFailure is cl-unshare's own failure; otherwise it exits with CMD's
// code (package level's ErrorCode and ExitCode).
const exitFailure = level.ExitFailure

func main() {
	level.Init() // a re-executed stage of a level does not return
	os.Exit(run(os.Args, os.Stderr))
}

// run runs the command line and returns the exit code.
func run(args []string, stderr io.Writer) int {
	var code exitCode
	app, args := setup(args, &code)
	app.ErrWriter = stderr
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "cl-unshare: %s\n", flagsIn(err.Error()))
		return level.ErrorCode(err)
	}
	return int(code)
}

// setup makes the app for one command line, and the line as it is to be
// parsed: a subcommand's options before its arguments, --kill-child's
// default value.
func setup(args []string, code *exitCode) (*cli.App, []string) {
	app := newApp(code)
	app.OnUsageError = usageError("", app.Flags, args)
	cmds := commands(code)
	// Written only for a command line that asks: it costs ~1.5 ms, on
	// every start otherwise.
	help := wantsHelp(args)
	if help {
		app.CustomAppHelpTemplate = helpText(app.Flags, cmds)
	}
	if commandAt(args, cmds) < 0 {
		return app, optionalValues(args)
	}
	for _, c := range cmds {
		c.OnUsageError = usageError(c.Name, c.Flags, args)
		if help {
			c.CustomHelpTemplate = commandHelp(c)
		}
	}
	app.Commands = cmds
	return app, reorder(args, cmds)
}

// wantsHelp reports whether a help option comes before CMD's "--".
func wantsHelp(args []string) bool {
	for _, a := range args[1:] {
		switch a {
		case "--":
			return false
		case "-h", "--help", "-help", "help":
			return true
		}
	}
	return false
}

type exitCode int

// optionalValues gives --kill-child its default value when it has none
// (unshare's --kill-child[=SIG]); the flag package needs one. Only the
// options before CMD are looked at.
func optionalValues(args []string) []string {
	out := append([]string(nil), args...)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		if a == "--kill-child" || a == "-kill-child" {
			out[i] = "--kill-child=KILL"
		} else if !strings.Contains(a, "=") && !boolOptions[a] && a != "-h" && a != "--help" {
			i++
		}
	}
	return out
}
