package main

import (
	"github.com/urfave/cli/v2"
)

// nsValue is a namespace flag as unshare has them: --net alone asks for
// the namespace, --net=FILE also keeps it, by a bind mount on FILE. It
// tells the flag package it is boolean, so a bare --net takes no value.
type nsValue struct {
	on   bool
	file string
}

func (v *nsValue) Set(s string) error {
	switch s {
	case "true":
		v.on = true
	case "false":
		v.on, v.file = false, ""
	default:
		v.on, v.file = true, s
	}
	return nil
}

// String is what c.Bool reads.
func (v *nsValue) String() string {
	if v != nil && v.on {
		return "true"
	}
	return "false"
}

func (v *nsValue) IsBoolFlag() bool { return true }

func nsFlag(name, alias, usage string) *cli.GenericFlag {
	return &cli.GenericFlag{Name: name, Aliases: []string{alias}, Value: &nsValue{}, Usage: usage}
}

// nsFile is the FILE of --NAME=FILE, or "".
func nsFile(c *cli.Context, name string) string {
	if v, ok := c.Generic(name).(*nsValue); ok {
		return v.file
	}
	return ""
}

// nsFlagNames are the namespace flags that take an optional FILE.
var nsFlagNames = []string{"pid", "net", "uts", "ipc", "time", "user"}
