package main

import (
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time (make build: -ldflags -X main.version=...,
// from git describe); otherwise it comes from what the Go toolchain
// stamped into the binary: the module version, or the VCS revision.
var version string

func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev + dirty
}

func init() {
	// unshare -V; urfave/cli's default is -v.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version and exit"}
	cli.VersionPrinter = func(c *cli.Context) { _, _ = c.App.Writer.Write([]byte("cl-unshare " + c.App.Version + "\n")) }
}
