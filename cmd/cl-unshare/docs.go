package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// The help, the man page and the shell completions are all written from
// the one flag table (flags, commands) and these groups, so that none of
// them can miss a flag: TestDocsCoverFlags checks every one is in each.

// flagGroups orders the options as --help and the man page show them.
var flagGroups = []struct {
	title string
	names []string
}{
	{"Namespaces and mounts", []string{"pid", "mount-proc", "init", "net", "uts", "hostname", "domainname", "ipc",
		"time", "monotonic", "boottime", "root", "wd", "propagation", "proc-view"}},
	{"Ids", []string{"user", "map-root-user", "map-current-user", "map-user", "map-group", "map-users", "map-groups",
		"setgroups", "setuid", "setgid", "keep-caps"}},
	{"Limits", []string{"memory", "cpus", "cpu-weight", "cpuset-cpus", "cpuset-mems", "pids-max", "set", "oom-group"}},
	{"Level", []string{"name", "cgroup-parent", "run-dir", "leaf", "no-leaf", "mirror-max"}},
	{"Supervision", []string{"exec", "kill-child", "timeout", "kill-after"}},
	{"Status", []string{"ready-fd", "json-status-fd", "stats"}},
}

const description = `Starts CMD (default: $SHELL, or /bin/sh) in a new level: its own cgroup in
every hierarchy, a cgroup namespace rooted there, a mount namespace, and a
fresh /sys/fs/cgroup mirrored to the host at RUN/levels/NAME/cgroup. The
level's limits bind CMD and everything it starts; root in the level may
divide them among child cgroups, never raise them.`

const exitStatus = `CMD's exit status, or 128+N if CMD was killed by signal N;
125 if cl-unshare itself failed; 126 if CMD could not be executed;
127 if CMD was not found; 124 (137 after SIGKILL) on --timeout.`

var examples = []struct{ cmd, what string }{
	{"cl-unshare --memory 512M --cpus 2 -- make -j2", "a build that cannot take more than 512 MiB and 2 CPUs"},
	{"cl-unshare -U -p --mount-proc -n -- sh", "a shell as root of its own user, PID and network namespaces"},
	{"cl-unshare --name web --exec --memory 1G -- /usr/sbin/nginx", "for an init system: the same PID, no supervisor"},
	{"cl-unshare -R /srv/rootfs -w / -p --mount-proc -- /bin/sh", "a shell in another root, with its own /proc and cgroup tree"},
	{"cl-unshare --net=/run/netns/ci7 -- sleep infinity", "a network namespace that ip netns exec can enter"},
	{"cl-unshare list; cl-unshare exec web -- ps; cl-unshare kill web", "see, enter and stop running levels"},
}

// flagByName finds a flag of the table by its first name.
func flagByName(fs []cli.Flag, name string) cli.Flag {
	for _, f := range fs {
		if f.Names()[0] == name {
			return f
		}
	}
	return nil
}

// flagDoc is how one flag is written: its spellings ("-n, --net[=FILE]")
// and what it does, with the placeholder unquoted.
func flagDoc(f cli.Flag) (spell, usage string) {
	d, _ := f.(cli.DocGenerationFlag)
	placeholder, usage := "", ""
	if d != nil {
		placeholder, usage = unquoteUsage(d.GetUsage())
	}
	var names []string
	for _, n := range f.Names() {
		if len(n) == 1 {
			names = append([]string{"-" + n}, names...)
		} else {
			names = append(names, "--"+n)
		}
	}
	spell = strings.Join(names, ", ")
	switch g := f.(type) {
	case *cli.GenericFlag:
		if _, ok := g.Value.(*nsValue); ok {
			spell += "[=" + placeholder + "]"
		}
	case *cli.BoolFlag:
	case *cli.StringFlag:
		// A default worth saying; a boolean's false never is.
		if g.Value != "" && !strings.Contains(usage, "default") {
			usage += " (default " + g.Value + ")"
		}
		if placeholder == "" {
			placeholder = "VALUE"
		}
		spell += " " + placeholder
	default:
		if placeholder == "" {
			placeholder = "VALUE"
		}
		spell += " " + placeholder
	}
	return spell, usage
}

// unquoteUsage takes the first `WORD` of a usage string as the flag's
// placeholder, as the flag package does, and drops the backquotes.
func unquoteUsage(usage string) (placeholder, text string) {
	before, rest, ok := strings.Cut(usage, "`")
	if !ok {
		return "", usage
	}
	name, after, ok := strings.Cut(rest, "`")
	if !ok {
		return "", usage
	}
	return name, before + name + after
}

// wrap breaks s into lines of at most width runes.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// helpText is --help: the options in their groups, as unshare(1) shows
// them, without defaults that say nothing, then the commands and examples.
func helpText(fs []cli.Flag, cmds []*cli.Command) string {
	var b strings.Builder
	b.WriteString("Usage:\n  cl-unshare [options] [--] [CMD [ARG...]]\n  cl-unshare COMMAND [options] [NAME] ...\n\n")
	b.WriteString(indent(description, "  ") + "\n")
	row := func(left, right string) {
		const col = 30
		lines := wrap(right, 78-col)
		if len(left) > col-3 {
			fmt.Fprintf(&b, "  %s\n", left)
		} else {
			fmt.Fprintf(&b, "  %-*s %s\n", col-3, left, lines[0])
			lines = lines[1:]
		}
		for _, l := range lines {
			fmt.Fprintf(&b, "%*s%s\n", col, "", l)
		}
	}
	for _, g := range flagGroups {
		fmt.Fprintf(&b, "\n%s:\n", g.title)
		for _, n := range g.names {
			if f := flagByName(fs, n); f != nil {
				row(flagDoc(f))
			}
		}
	}
	b.WriteString("\nCommands (cl-unshare COMMAND --help for their options):\n")
	for _, c := range cmds {
		if !c.Hidden {
			row(strings.Join(c.Names(), ", ")+" "+c.ArgsUsage, c.Usage)
		}
	}
	b.WriteString("\nOther options:\n")
	row("-h, --help", "show this help")
	row("-V, --version", "print the version")
	b.WriteString("\nExit status:\n" + indent(exitStatus, "  ") + "\n\nExamples:\n")
	for _, e := range examples {
		fmt.Fprintf(&b, "  %s\n      %s\n", e.cmd, e.what)
	}
	b.WriteString("\nSee README.md for every option at length, and cl-unshare(1).\n")
	return b.String()
}

// commandHelp is COMMAND --help, in the same style as helpText.
func commandHelp(c *cli.Command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage:\n  cl-unshare %s [options] %s\n\n", c.Name, c.ArgsUsage)
	b.WriteString(indent(strings.Join(wrap(c.Usage, 74), "\n"), "  ") + "\n")
	if len(c.Aliases) > 0 {
		fmt.Fprintf(&b, "  (also: cl-unshare %s)\n", strings.Join(c.Aliases, ", "))
	}
	b.WriteString("\nOptions:\n")
	for _, f := range c.Flags {
		spell, usage := flagDoc(f)
		fmt.Fprintf(&b, "  %-24s %s\n", spell, usage)
	}
	fmt.Fprintf(&b, "  %-24s %s\n", "-h, --help", "show this help")
	return b.String()
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(s, "\n", "\n"+by)
}

// roff escapes text for a man page: backslashes, hyphens of options, and
// a line that would start with a control character.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// manPage is cl-unshare.1, in man(7) macros.
func manPage(fs []cli.Flag, cmds []*cli.Command, version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH CL\\-UNSHARE 1 \"\" \"cl-unshare %s\" \"User Commands\"\n", roff(version))
	b.WriteString(".SH NAME\ncl\\-unshare \\- run a command in its own level of cgroups and namespaces\n")
	b.WriteString(".SH SYNOPSIS\n.B cl\\-unshare\n[\\fIoptions\\fR] [\\fB\\-\\-\\fR] [\\fICMD\\fR [\\fIARG\\fR...]]\n.br\n.B cl\\-unshare\n\\fICOMMAND\\fR [\\fIoptions\\fR] [\\fINAME\\fR]...\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(description) + "\n")
	b.WriteString(".SH OPTIONS\n")
	for _, g := range flagGroups {
		fmt.Fprintf(&b, ".SS %s\n", roff(g.title))
		for _, n := range g.names {
			f := flagByName(fs, n)
			if f == nil {
				continue
			}
			spell, usage := flagDoc(f)
			fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roff(spell), roff(usage))
		}
	}
	b.WriteString(".SS Other\n.TP\n.B \\-h, \\-\\-help\nshow the help\n.TP\n.B \\-V, \\-\\-version\nprint the version\n")
	b.WriteString(".SH COMMANDS\n")
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roff(strings.Join(c.Names(), ", ")+" "+c.ArgsUsage), roff(c.Usage))
		for _, f := range c.Flags {
			spell, usage := flagDoc(f)
			fmt.Fprintf(&b, ".RS\n.TP\n.B %s\n%s\n.RE\n", roff(spell), roff(usage))
		}
	}
	b.WriteString(".SH EXIT STATUS\n" + roff(exitStatus) + "\n")
	b.WriteString(".SH EXAMPLES\n")
	for _, e := range examples {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roff(e.cmd), roff(e.what))
	}
	b.WriteString(".SH SEE ALSO\n.BR unshare (1),\n.BR nsenter (1),\n.BR systemd\\-run (1),\n.BR cgroups (7),\n.BR namespaces (7)\n")
	return b.String()
}

// spellings lists every way a flag of fs is typed: --name and -n.
func spellings(fs []cli.Flag) []string {
	var out []string
	for _, f := range fs {
		for _, n := range f.Names() {
			if len(n) == 1 {
				out = append(out, "-"+n)
			} else {
				out = append(out, "--"+n)
			}
		}
	}
	return out
}

// bashCompletion completes options, commands, and level names after the
// commands that take one.
func bashCompletion(fs []cli.Flag, cmds []*cli.Command) string {
	var b strings.Builder
	b.WriteString("# bash completion for cl-unshare, written by cl-unshare _doc bash\n_cl_unshare() {\n")
	b.WriteString("\tlocal cur=${COMP_WORDS[COMP_CWORD]} cmd= i\n")
	b.WriteString("\tfor ((i = 1; i < COMP_CWORD; i++)); do\n\t\tcase ${COMP_WORDS[i]} in\n\t\t--) return ;;\n")
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Names()...)
		}
	}
	fmt.Fprintf(&b, "\t\t%s) cmd=${COMP_WORDS[i]}; break ;;\n\t\tesac\n\tdone\n", strings.Join(names, "|"))
	b.WriteString("\tcase $cmd in\n")
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		words := append(spellings(c.Flags), "--help")
		levels := ""
		if strings.Contains(c.ArgsUsage, "NAME") {
			levels = ` $(cl-unshare list --json 2>/dev/null | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')`
		}
		fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -W \"%s%s\" -- \"$cur\")) ;;\n", strings.Join(c.Names(), "|"), strings.Join(words, " "), levels)
	}
	words := append(spellings(fs), "--help", "-h", "--version", "-V")
	fmt.Fprintf(&b, "\t*) COMPREPLY=($(compgen -W \"%s %s\" -- \"$cur\")) ;;\n\tesac\n}\ncomplete -o default -F _cl_unshare cl-unshare\n",
		strings.Join(words, " "), strings.Join(names, " "))
	return b.String()
}

// zshQuote makes s safe inside an _arguments description.
func zshQuote(s string) string {
	r := strings.NewReplacer("'", `'\''`, "[", `\[`, "]", `\]`, ":", `\:`)
	return r.Replace(s)
}

// zshCompletion is _cl-unshare, for a directory in $fpath.
func zshCompletion(fs []cli.Flag, cmds []*cli.Command) string {
	var b strings.Builder
	b.WriteString("#compdef cl-unshare\n# zsh completion for cl-unshare, written by cl-unshare _doc zsh\n\n_cl-unshare() {\n\tlocal -a opts cmds\n\topts=(\n")
	for _, f := range fs {
		_, usage := flagDoc(f)
		d := zshQuote(usage)
		_, isBool := f.(*cli.BoolFlag)
		if g, ok := f.(*cli.GenericFlag); ok {
			_, isBool = g.Value.(*nsValue)
		}
		for _, s := range spellings([]cli.Flag{f}) {
			if isBool {
				fmt.Fprintf(&b, "\t\t'%s[%s]'\n", s, d)
			} else {
				fmt.Fprintf(&b, "\t\t'%s=[%s]:value:'\n", s, d)
			}
		}
	}
	b.WriteString("\t\t'(-)--help[show the help]'\n\t\t'(-)-V[print the version]'\n\t\t'(-)--version[print the version]'\n\t)\n\tcmds=(\n")
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, n := range c.Names() {
			fmt.Fprintf(&b, "\t\t'%s:%s'\n", n, zshQuote(c.Usage))
		}
	}
	b.WriteString("\t)\n\tif (( CURRENT > 2 )) && (( ${cmds[(I)${words[2]}:*]} )); then\n\t\tcase ${words[2]} in\n")
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		var sub []string
		for _, s := range append(spellings(c.Flags), "--help") {
			sub = append(sub, "'"+s+"'")
		}
		fmt.Fprintf(&b, "\t\t%s) _arguments %s '*::arg:_files' ;;\n", strings.Join(c.Names(), "|"), strings.Join(sub, " "))
	}
	b.WriteString("\t\tesac\n\t\treturn\n\tfi\n\t_arguments -s $opts '1:: :{_describe command cmds; _command_names -e}' '*::arg:_normal'\n}\n\n_cl-unshare \"$@\"\n")
	return b.String()
}

// docCommand is the hidden "_doc man|bash|zsh" that make build runs to
// write the man page and the completions from this binary's own table.
func docCommand(fs []cli.Flag, cmds func() []*cli.Command) *cli.Command {
	return &cli.Command{Name: "_doc", Hidden: true, ArgsUsage: "man|bash|zsh",
		Action: func(c *cli.Context) error {
			kinds := map[string]func() string{
				"man":  func() string { return manPage(fs, cmds(), buildVersion()) },
				"bash": func() string { return bashCompletion(fs, cmds()) },
				"zsh":  func() string { return zshCompletion(fs, cmds()) },
			}
			gen, ok := kinds[c.Args().First()]
			if c.NArg() != 1 || !ok {
				return fmt.Errorf("_doc: needs one of %s", strings.Join(slices.Sorted(maps.Keys(kinds)), ", "))
			}
			_, err := fmt.Fprint(c.App.Writer, gen())
			return err
		}}
}
