package main

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeCommands are README.md's cl-unshare command lines: in code blocks
// (also as ExecStart= of a unit), in inline code, and each option's
// example in the options table, run as "cl-unshare EXAMPLE -- true".
func readmeCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	block := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			block = !block
			continue
		}
		if block {
			l := strings.TrimPrefix(strings.TrimSpace(line), "$ ")
			for _, p := range []string{"ExecStart=", "ExecStopPost="} {
				if v, ok := strings.CutPrefix(l, p); ok {
					l = strings.TrimPrefix(v, "/usr/local/bin/")
				}
			}
			if strings.HasPrefix(l, "cl-unshare ") {
				out = append(out, l)
			}
			continue
		}
		for _, m := range regexp.MustCompile("`(cl-unshare [^`]+)`").FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
		if strings.HasPrefix(line, "| `-") {
			if cols := strings.Split(line, "|"); len(cols) > 3 {
				if ex := strings.Trim(strings.TrimSpace(cols[2]), "`"); strings.HasPrefix(ex, "-") {
					out = append(out, "cl-unshare "+ex+" -- true")
				}
			}
		}
	}
	return out
}

// words splits a shell command line the way sh would for these examples:
// quotes, a trailing & and comments.
func words(line string) []string {
	var out []string
	var cur strings.Builder
	in, quote, started := false, byte(0), false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, started = c, true
		case c == '#' && !in:
			return out
		case c == ' ' || c == '\t':
			if started {
				out = append(out, cur.String())
				cur.Reset()
			}
			in, started = false, false
		default:
			cur.WriteByte(c)
			in, started = true, true
		}
	}
	if started {
		out = append(out, cur.String())
	}
	if n := len(out); n > 0 && out[n-1] == "&" {
		out = out[:n-1]
	}
	return out
}

// parsed runs a command line through the real app, parsing only, and
// returns what a subcommand parsed.
func parsed(args []string) (string, error) {
	var code exitCode
	app, a := setup(append([]string{"cl-unshare"}, args...), &code)
	app.Metadata = map[string]any{"dry": true}
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := app.Run(a)
	p, _ := app.Metadata["parsed"].(string)
	return p, err
}

// Every command line README shows parses, so README cannot
// drift from the parser; a subcommand's takes its options on either side
// of its arguments, with the same result.
func TestReadmeCommandsParse(t *testing.T) {
	lines := readmeCommands(t)
	if len(lines) < 20 {
		t.Fatalf("found only %d command lines in README.md", len(lines))
	}
	for _, line := range lines {
		w := words(line)[1:]
		if strings.Contains(line, "[") || slices.Contains(w, "CMD") {
			continue // a synopsis, not an example
		}
		got, err := parsed(w)
		if err != nil {
			t.Errorf("README's %q: %v", line, err)
			continue
		}
		if other := otherOrder(w); other != nil {
			again, err := parsed(other)
			if err != nil || again != got {
				t.Errorf("README's %q as %q: %q, %v; want %q", line, other, again, err, got)
			}
		}
	}
}

// otherOrder moves a subcommand's options to the other side of its
// arguments (up to --), or returns nil where there is nothing to move.
func otherOrder(w []string) []string {
	if len(w) == 0 || commandAt(append([]string{"cl-unshare"}, w...), commands(new(exitCode))) != 1 {
		return nil
	}
	var opts, pos, rest []string
	for i := 1; i < len(w); i++ {
		switch {
		case w[i] == "--":
			rest = w[i:]
			i = len(w)
		case strings.HasPrefix(w[i], "-"):
			opts = append(opts, w[i])
			if !strings.Contains(w[i], "=") && w[i] != "--json" && i+1 < len(w) {
				i++
				opts = append(opts, w[i])
			}
		default:
			pos = append(pos, w[i])
		}
	}
	if len(opts) == 0 || len(pos) == 0 {
		return nil
	}
	first := strings.HasPrefix(w[1], "-")
	out := []string{w[0]}
	if first {
		out = append(append(out, pos...), opts...)
	} else {
		out = append(append(out, opts...), pos...)
	}
	return append(out, rest...)
}

// An unknown option is one line for every subcommand,
// named as typed, with no help text.
func TestUnknownOptionEachCommand(t *testing.T) {
	for _, c := range commands(new(exitCode)) {
		for _, bad := range []string{"--bogus", "-x"} {
			_, err := parsed([]string{c.Name, bad})
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "unknown option "+bad) ||
				!strings.HasPrefix(err.Error(), c.Name+": ") {
				t.Errorf("%s %s: %v", c.Name, bad, err)
			}
		}
	}
	for in, want := range map[string]string{"--memmory": "did you mean --memory?", "--cpu": "did you mean --cpus?",
		"--pid-max": "did you mean --pids-max?", "-x": "unknown option -x (see"} {
		if _, err := parsed([]string{in, "1", "--", "true"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	if _, err := parsed([]string{"list", "--jsn"}); err == nil || !strings.Contains(err.Error(), "did you mean --json?") {
		t.Errorf("list --jsn: %v", err)
	}
}

// Each subcommand's options before or after its
// arguments, as README writes them both ways.
func TestCommandOptionsEitherSide(t *testing.T) {
	for _, c := range []struct{ before, after []string }{
		{[]string{"inspect", "--json", "ci/job1"}, []string{"inspect", "ci/job1", "--json"}},
		{[]string{"kill", "--signal", "TERM", "web"}, []string{"kill", "web", "--signal", "TERM"}},
		{[]string{"kill", "-s", "TERM", "web"}, []string{"kill", "web", "--signal=TERM"}},
		{[]string{"exec", "--cgroup", "sub", "web", "--", "ps", "-ef"}, []string{"exec", "web", "--cgroup", "sub", "--", "ps", "-ef"}},
		{[]string{"exec", "--cgroup", "sub", "web", "--", "ps", "-ef"}, []string{"exec", "web", "--cgroup=sub", "ps", "-ef"}},
		{[]string{"list", "--json"}, []string{"ps", "--json"}},
		{[]string{"check", "--json"}, []string{"check", "--json"}},
		{[]string{"gc", "a", "b"}, []string{"gc", "a", "b"}},
	} {
		a, err1 := parsed(c.before)
		b, err2 := parsed(c.after)
		if err1 != nil || err2 != nil || a != b || a == "" {
			t.Errorf("%q: %q, %v; %q: %q, %v", c.before, a, err1, c.after, b, err2)
		}
	}
	// CMD's own options stay CMD's.
	if p, err := parsed([]string{"exec", "web", "ls", "--cgroup", "-l"}); err != nil || p != "exec web -- ls --cgroup -l" {
		t.Errorf("exec web ls --cgroup -l: %q, %v", p, err)
	}
}
