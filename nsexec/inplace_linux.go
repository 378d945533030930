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
	cfgFD, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fail(StepConfig, errors.New("bad in-place arguments"))
	}
	unix.CloseOnExec(cfgFD)
	var c Config
	f := os.NewFile(uintptr(cfgFD), "config")
	if err := json.NewDecoder(f).Decode(&c); err != nil {
		fail(StepConfig, err)
	}
	f.Close()
	for _, fd := range []int{c.RunDirFD, c.MirrorFD, c.TemplateFD} {
		unix.CloseOnExec(fd)
	}
	for _, f := range c.ProcViewFiles {
		unix.CloseOnExec(f.FD)
	}
	step, err := newLevel(&c)
	if err == nil {
		step, err = StepExec, execCommand(nil, &c)
	}
	fail(step, err)
}
