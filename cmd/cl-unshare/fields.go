package main

import (
	"cmp"
	"slices"
	"strings"
)

// flagOf is the flag (or argument) each field of level.Config and
// level.JoinConfig comes from. Package level speaks of fields in its
// messages ("Limits.Memory: invalid size"), so that a Go caller never
// reads a flag it did not pass; flagsIn shows the command line's words
// instead ("--memory: invalid size").
var flagOf = map[string]string{
	"Config.Name":         "--name",
	"Config.Argv":         "command",
	"Config.CgroupParent": "--cgroup-parent",
	"Config.RunDir":       "--run-dir",
	"Config.ReadyFD":      "--ready-fd",
	"Config.StatusFD":     "--json-status-fd",
	"Config.KillSignal":   "--kill-child",
	"Config.PID":          "--pid",
	"Config.MountProc":    "--mount-proc",
	"Config.Init":         "--init",
	"Config.User":         "--user",
	"Config.UIDMap":       "--map-users",
	"Config.GIDMap":       "--map-groups",
	"Config.Leaf":         "--leaf",
	"Config.NoLeaf":       "--no-leaf",
	"Config.MirrorMax":    "--mirror-max",
	"Limits.Memory":       "--memory",
	"Limits.CPUs":         "--cpus",
	"Limits.CPUWeight":    "--cpu-weight",
	"Limits.CpusetCPUs":   "--cpuset-cpus",
	"Limits.CpusetMems":   "--cpuset-mems",
	"Limits.PidsMax":      "--pids-max",
	"Limits.Set":          "--set",
	"ExecInPlace":         "--exec",
	"JoinConfig.Argv":     "command",
	"JoinConfig.Cgroup":   "--cgroup",
	"JoinConfig.RunDir":   "--run-dir",
}

// fieldWords replaces every field name in a message by its flag. Longer
// names come first, so that JoinConfig.Argv is not read as Config.Argv.
var fieldWords = func() *strings.Replacer {
	names := make([]string, 0, len(flagOf))
	for f := range flagOf {
		names = append(names, f)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	var pairs []string
	for _, f := range names {
		pairs = append(pairs, f, flagOf[f])
	}
	return strings.NewReplacer(pairs...)
}()

// flagsIn is message s in the command line's words.
func flagsIn(s string) string { return fieldWords.Replace(s) }
