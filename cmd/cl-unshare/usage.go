package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// takesValue reports whether flag a (as typed, "-x", "--name" or
// "--name=v") is one of flags and needs the next argument as its value.
func takesValue(a string, flags []cli.Flag) (known, value bool) {
	name := strings.TrimLeft(a, "-")
	name, _, hasValue := strings.Cut(name, "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return true, !isBool && !hasValue
			}
		}
	}
	return name == "h" || name == "help", false
}

// commandAt is the index in args of the subcommand's name: the first word
// that is not an option (or an option's value), if no "--" comes first.
func commandAt(args []string, cmds []*cli.Command) int {
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return -1
		case a == "-h" || a == "--help" || a == "-help":
		case strings.HasPrefix(a, "-"):
			if !strings.Contains(a, "=") && !boolOptions[a] {
				i++ // the option's value
			}
		default:
			for _, c := range cmds {
				if c.HasName(a) {
					return i
				}
			}
			return -1
		}
	}
	return -1
}

// reorder puts a subcommand's options before its arguments, so that
// "inspect NAME --json" reads as "inspect --json NAME", as README writes
// both: the flag package stops at the first argument. Nothing after "--"
// moves; for exec, nothing after its NAME that is not one of exec's own
// options either, as that is CMD and its options.
func reorder(args []string, cmds []*cli.Command) []string {
	at := commandAt(args, cmds)
	if at < 0 {
		return args
	}
	var cmd *cli.Command
	for _, c := range cmds {
		if c.HasName(args[at]) {
			cmd = c
		}
	}
	var opts, pos, rest []string
	tail := args[at+1:]
	for i := 0; i < len(tail); i++ {
		a := tail[i]
		if a == "--" {
			rest = tail[i:]
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			opts = append(opts, a)
			if _, value := takesValue(a, cmd.Flags); value && i+1 < len(tail) {
				i++
				opts = append(opts, tail[i])
			}
			continue
		}
		pos = append(pos, a)
		if cmd.Name != "exec" {
			continue
		}
		// After exec's NAME: its own options, then CMD as it is.
		for i+1 < len(tail) && strings.HasPrefix(tail[i+1], "-") && tail[i+1] != "--" {
			known, value := takesValue(tail[i+1], cmd.Flags)
			if !known {
				break
			}
			opts, i = append(opts, tail[i+1]), i+1
			if value && i+1 < len(tail) {
				opts, i = append(opts, tail[i+1]), i+1
			}
		}
		if cmdline := tail[i+1:]; len(cmdline) > 0 && cmdline[0] != "--" {
			rest = append([]string{"--"}, cmdline...)
			break
		}
	}
	out := append(append([]string(nil), args[:at+1]...), opts...)
	return append(append(out, pos...), rest...)
}

// usageError turns the flag package's complaints into one line that names
// the option as the user typed it, and the nearest known one for a typo.
func usageError(cmd string, flags []cli.Flag, args []string) cli.OnUsageErrorFunc {
	help := "cl-unshare --help"
	if cmd != "" {
		help = "cl-unshare " + cmd + " --help"
	}
	prefix := ""
	if cmd != "" {
		prefix = cmd + ": "
	}
	return func(_ *cli.Context, err error, _ bool) error {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			typed := asTyped(name, args)
			if near := nearest(name, flags); near != "" {
				return fmt.Errorf("%sunknown option %s: did you mean --%s? (see %s)", prefix, typed, near, help)
			}
			return fmt.Errorf("%sunknown option %s (see %s)", prefix, typed, help)
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
			return fmt.Errorf("%soption %s needs a value (see %s)", prefix, asTyped(name, args), help)
		}
		if v, ok := strings.CutPrefix(msg, "invalid value "); ok {
			// invalid value "x" for flag -ready-fd: parse error
			value, flag, _ := strings.Cut(v, " for flag -")
			flag, _, _ = strings.Cut(flag, ":")
			return fmt.Errorf("%s--%s: invalid value %s (see %s)", prefix, flag, value, help)
		}
		return fmt.Errorf("%s%v (see %s)", prefix, err, help)
	}
}

// asTyped finds how the user spelled option name: -x, --x, --x=V.
func asTyped(name string, args []string) string {
	for _, a := range args {
		if a == "--" {
			break
		}
		if s, _, _ := strings.Cut(a, "="); s == "-"+name || s == "--"+name {
			return s
		}
	}
	return "--" + name
}

// nearest is the known option name closest to name, if it is a near miss:
// at most two edits away (one for short names), or name is its prefix.
func nearest(name string, flags []cli.Flag) string {
	best, dist := "", 3
	if len(name) <= 3 {
		dist = 2
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) < 2 {
				continue
			}
			d := editDistance(name, n)
			if len(name) >= 3 && strings.HasPrefix(n, name) {
				d = min(d, 1)
			}
			if d < dist {
				best, dist = n, d
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
