package main

import (
	"cmp"
	"maps"
	"slices"
	"strings"
)

// flagOf is the flag (or argument) each field of level.Config and
// level.JoinConfig comes from. Package level speaks of fields in its
// messages ("Limits.Memory: invalid size"), so that a Go caller never
// reads a flag it did not pass; flagsIn shows the command line's words
// instead ("--memory: invalid size").
var flagOf = map[string]string{
	"Config.Name":           "--name",
	"Config.Argv":           "command",
	"Config.CgroupParent":   "--cgroup-parent",
	"Config.RunDir":         "--run-dir",
	"Config.ReadyFD":        "--ready-fd",
	"Config.StatusFD":       "--json-status-fd",
	"Config.KillSignal":     "--kill-child",
	"Config.PID":            "--pid",
	"Config.MountProc":      "--mount-proc",
	"Config.Init":           "--init",
	"Config.Net":            "--net",
	"Config.UTS":            "--uts",
	"Config.IPC":            "--ipc",
	"Config.Hostname":       "--hostname",
	"Config.Domainname":     "--domainname",
	"Config.Time":           "--time",
	"Config.Monotonic":      "--monotonic",
	"Config.Boottime":       "--boottime",
	"Config.Persist.pid":    "--pid",
	"Config.Persist.net":    "--net",
	"Config.Persist.uts":    "--uts",
	"Config.Persist.ipc":    "--ipc",
	"Config.Persist.time":   "--time",
	"Config.Persist.user":   "--user",
	"Config.Persist":        "--NS=FILE",
	"Config.ProcView":       "--proc-view",
	"Config.Root":           "--root",
	"Config.WorkDir":        "--wd",
	"Config.Propagation":    "--propagation",
	"Config.SetUID":         "--setuid",
	"Config.SetGID":         "--setgid",
	"Config.User":           "--user",
	"Config.UIDMap":         "--map-users",
	"Config.AllowSetgroups": "--setgroups",
	"Config.KeepCaps":       "--keep-caps",
	"Config.GIDMap":         "--map-groups",
	"Config.Leaf":           "--leaf",
	"Config.NoLeaf":         "--no-leaf",
	"Config.MirrorMax":      "--mirror-max",
	"Config.Timeout":        "--timeout",
	"Config.KillAfter":      "--kill-after",
	"Limits.Memory":         "--memory",
	"Limits.CPUs":           "--cpus",
	"Limits.CPUWeight":      "--cpu-weight",
	"Limits.CpusetCPUs":     "--cpuset-cpus",
	"Limits.CpusetMems":     "--cpuset-mems",
	"Limits.PidsMax":        "--pids-max",
	"Limits.Set":            "--set",
	"Limits.OOMGroup":       "--oom-group",
	"ExecInPlace":           "--exec",
	"JoinConfig.Argv":       "command",
	"JoinConfig.Cgroup":     "--cgroup",
	"JoinConfig.RunDir":     "--run-dir",
}

// fieldNames lists flagOf's keys, longer first, so that JoinConfig.Argv
// is not read as Config.Argv.
var fieldNames = func() []string {
	names := slices.Collect(maps.Keys(flagOf))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	return names
}()

// flagsIn is message s in the command line's words: each field name the
// library wrote becomes its flag. Only whole words are, where the
// library puts them (at the start of a line, after a space or a parenthesis); a
// quoted value (%q) is the user's and stays as it is, so --run-dir
// Config.Name is still reported as "Config.Name".
func flagsIn(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '"' {
			j := quoteEnd(s, i)
			b.WriteString(s[i:j])
			i = j
			continue
		}
		if f := fieldAt(s, i); f != "" {
			b.WriteString(flagOf[f])
			i += len(f)
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// fieldAt is the field name that starts at s[i] as a whole word, or "".
func fieldAt(s string, i int) string {
	if i > 0 && !strings.ContainsRune(" (\n", rune(s[i-1])) {
		return ""
	}
	for _, f := range fieldNames {
		if !strings.HasPrefix(s[i:], f) {
			continue
		}
		rest := s[i+len(f):]
		if rest == "" || !wordByte(rest[0]) && (rest[0] != '.' || len(rest) == 1 || !wordByte(rest[1])) {
			return f
		}
	}
	return ""
}

func wordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// quoteEnd is the index just past the Go-quoted string that starts at
// s[i], or len(s) if it does not end.
func quoteEnd(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(s)
}
