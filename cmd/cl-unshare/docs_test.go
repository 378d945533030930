package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// Every flag is in exactly one group of --help; every spelling of every
// flag (global and each command's) and every command is in --help, the
// man page and both completions; --help has no "(default: false)".
func TestDocsCoverFlags(t *testing.T) {
	var code exitCode
	fs, cmds := flags(), commands(&code)
	seen := map[string]int{}
	for _, g := range flagGroups {
		for _, n := range g.names {
			seen[n]++
		}
	}
	for _, f := range fs {
		if n := f.Names()[0]; seen[n] != 1 {
			t.Errorf("--%s is in %d groups of the help, want 1", n, seen[n])
		}
		delete(seen, f.Names()[0])
	}
	for n := range seen {
		t.Errorf("the help's groups name --%s, which is no flag", n)
	}
	docs := map[string]string{
		"--help":     helpText(fs, cmds),
		"man page":   manPage(fs, cmds, "test"),
		"bash":       bashCompletion(fs, cmds),
		"zsh":        zshCompletion(fs, cmds),
		"_doc man":   runOut(t, "_doc", "man"),
		"--help run": runOut(t, "--help"),
	}
	// --help shows the commands' own options only with COMMAND --help.
	var global, all []string
	for _, f := range fs {
		global = append(global, spellings([]cli.Flag{f})...)
	}
	all = global
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		global = append(global, c.Names()...)
		all = append(append(all, c.Names()...), spellings(c.Flags)...)
	}
	for doc, text := range docs {
		if doc == "man page" || doc == "_doc man" {
			text = strings.ReplaceAll(text, `\-`, "-")
		}
		want := all
		if strings.HasPrefix(doc, "--help") {
			want = global
		}
		for _, w := range want {
			if !containsWord(text, w) {
				t.Errorf("%s does not show %s", doc, w)
			}
		}
	}
	for _, doc := range []string{"--help", "--help run"} {
		if strings.Contains(docs[doc], "(default: false)") || !strings.Contains(docs[doc], "Examples:") {
			t.Errorf("%s has (default: false), or no examples:\n%s", doc, docs[doc])
		}
	}
}

// containsWord reports whether w is in text with no letter, digit or
// hyphen right before or after it: --net is not found in --netns.
func containsWord(text, w string) bool {
	word := func(r byte) bool {
		return r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	}
	for i := 0; ; {
		j := strings.Index(text[i:], w)
		if j < 0 {
			return false
		}
		j += i
		if (j == 0 || !word(text[j-1])) && (j+len(w) == len(text) || !word(text[j+len(w)])) {
			return true
		}
		i = j + 1
	}
}

// The man page renders without a warning; the completions parse.
func TestDocsRender(t *testing.T) {
	dir := t.TempDir()
	var code exitCode
	fs, cmds := flags(), commands(&code)
	for _, d := range []struct{ file, text, tool string }{
		{"cl-unshare.1", manPage(fs, cmds, "test"), "groff"},
		{"cl-unshare.bash", bashCompletion(fs, cmds), "bash"},
		{"_cl-unshare", zshCompletion(fs, cmds), "zsh"},
	} {
		p := filepath.Join(dir, d.file)
		if err := os.WriteFile(p, []byte(d.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath(d.tool); err != nil {
			t.Logf("%s not installed: %s not checked", d.tool, d.file)
			continue
		}
		args := []string{"-n", p}
		if d.tool == "groff" {
			args = []string{"-man", "-Tutf8", "-ww", "-z", p}
		}
		out, err := exec.Command(d.tool, args...).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("%s %v: %v\n%s", d.tool, args, err, out)
		}
	}
	if !slices.Contains(strings.Fields(bashCompletion(fs, cmds)), "complete") {
		t.Errorf("the bash completion registers nothing")
	}
}

// runOut runs the command line in this process, as main does, and
// returns what it printed.
func runOut(t *testing.T, args ...string) string {
	t.Helper()
	var out strings.Builder
	var code exitCode
	app, line := setup(append([]string{"cl-unshare"}, args...), &code)
	app.Writer = &out
	if err := app.Run(line); err != nil {
		t.Fatalf("cl-unshare %v: %v", args, err)
	}
	return out.String()
}
