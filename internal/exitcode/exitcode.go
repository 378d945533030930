// Package exitcode is the one place the exit codes are decided: CMD's
// own (or 128+signal), and cl-unshare's, which are never mistaken for
// CMD's, as unshare and shells have them.
package exitcode

import (
	"errors"
	"syscall"
)

const (
	Failure  = 125 // cl-unshare itself failed
	NotExec  = 126 // CMD was found but could not be executed
	NotFound = 127 // CMD was not found
)

// Of maps a wait status the way shells do: the code, or 128+signal.
func Of(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Exec is the code for a failure to execute CMD.
func Exec(err error) int {
	if errors.Is(err, syscall.ENOENT) {
		return NotFound
	}
	return NotExec
}
