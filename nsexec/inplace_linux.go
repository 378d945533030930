package nsexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/cl-unshare/cl-unshare/internal/exitcode"
	"golang.org/x/sys/unix"
)

// mainInPlace is Main for --exec: same steps, errors on stderr.
func mainInPlace() {
	fail := func(step string, err error) {
		code := exitcode.Failure
		if step == StepExec {
			code = exitcode.Exec(err)
		}
		fmt.Fprintf(os.Stderr, "cl-unshare: %s: %v (what was set up is left for cl-unshare gc)\n", step, err)
		os.Exit(code)
	}
	cfgFD, err1 := strconv.Atoi(os.Args[2])
	levelFD, err2 := strconv.Atoi(os.Args[3])
	if err1 != nil || err2 != nil {
		fail(StepConfig, errors.New("bad in-place arguments"))
	}
	unix.CloseOnExec(cfgFD)
	unix.CloseOnExec(levelFD)
	var c Config
	f := os.NewFile(uintptr(cfgFD), "config")
	if err := json.NewDecoder(f).Decode(&c); err != nil {
		fail(StepConfig, err)
	}
	f.Close()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		fail("unshare mount namespace", err)
	}
	// The run directory's fd is where the steps expect it.
	if levelFD != RunDirFD {
		if err := unix.Dup3(levelFD, RunDirFD, unix.O_CLOEXEC); err != nil {
			fail(StepPropagation, err)
		}
		unix.Close(levelFD)
	}
	step, err := newLevel(&c)
	if err == nil {
		step, err = StepExec, execCommand(nil, &c)
	}
	fail(step, err)
}
