package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/level"
)

// Every field a user can set from the command line has its flag, so that
// no message shows a CLI user a Go name.
func TestEveryFieldHasAFlag(t *testing.T) {
	noFlag := map[string]bool{"Config.Stdin": true, "Config.Stdout": true, "Config.Stderr": true,
		"Config.Limits": true, "JoinConfig.Stdin": true, "JoinConfig.Stdout": true, "JoinConfig.Stderr": true,
		"JoinConfig.Name": true} // exec NAME: an argument, named in the messages as itself
	for prefix, v := range map[string]any{"Config.": level.Config{}, "Limits.": level.Limits{}, "JoinConfig.": level.JoinConfig{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := prefix + typ.Field(i).Name
			if _, ok := flagOf[f]; !ok && !noFlag[f] {
				t.Errorf("%s has no flag in flagOf", f)
			}
		}
	}
}

// Every field name the library writes in a message is one flagsIn knows,
// and it writes no flag.
func TestMessagesNameKnownFields(t *testing.T) {
	word := regexp.MustCompile(`\b(?:Config|Limits|JoinConfig)\.[A-Z]\w*|\bExecInPlace\b`)
	flag := regexp.MustCompile(`(^|[^-\w])--[a-z]`)
	literal := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	files, _ := filepath.Glob("../../level/*.go")
	more, _ := filepath.Glob("../../level/cgroup/*.go")
	seen := 0
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, lit := range literal.FindAllString(string(b), -1) {
			if flag.MatchString(lit) {
				t.Errorf("%s: message %s names a flag, not a field", f, lit)
			}
			for _, w := range word.FindAllString(lit, -1) {
				seen++
				if _, ok := flagOf[w]; !ok {
					t.Errorf("%s: message names %s, which flagOf does not know", f, w)
				}
				if text, err := strconv.Unquote(lit); err == nil && strings.Contains(flagsIn(text), w) {
					t.Errorf("%s: flagsIn leaves %s in %s", f, w, lit)
				}
			}
		}
	}
	if seen < 20 {
		t.Errorf("found only %d field names in the library's messages; is the source where this test looks?", seen)
	}
}

func TestFlagsIn(t *testing.T) {
	for in, want := range map[string]string{
		"Config.MountProc: needs Config.PID (a /proc of the host's)": "--mount-proc: needs --pid (a /proc of the host's)",
		"create cgroups: Limits.Set memory.high: refused":            "create cgroups: --set memory.high: refused",
		"JoinConfig.Argv: no command given":                          "command: no command given",
		"stopped: more than Config.MirrorMax 50":                     "stopped: more than --mirror-max 50",
		"(with Config.User: fails)":                                  "(with --user: fails)",
		"use Config.CgroupParent.":                                   "use --cgroup-parent.",
		// What the user wrote is the user's.
		`Config.RunDir: "Config.Name" is not an absolute path`: `--run-dir: "Config.Name" is not an absolute path`,
		`Config.CgroupParent: "../Limits.Memory\"x" escapes`:   `--cgroup-parent: "../Limits.Memory\"x" escapes`,
		"open /sys/fs/cgroup/Config.Name/x: no such file":      "open /sys/fs/cgroup/Config.Name/x: no such file",
		"Config.Usernames Config.User.x":                       "Config.Usernames Config.User.x",
		`unterminated "Config.Name`:                            `unterminated "Config.Name`,
	} {
		if got := flagsIn(in); got != want {
			t.Errorf("flagsIn(%q) = %q, want %q", in, got, want)
		}
	}
}
