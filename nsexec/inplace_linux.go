package nsexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/cl-unshare/cl-unshare/internal/exitcode"
	"golang.org/x/sys/unix"
)

// ExecInPlace replaces the calling process (same PID) with the init stage,
// handing it the config through a memfd. It returns only on failure.
func ExecInPlace(c *Config, levelFD int) error {
	c.InPlace = true
	fd, err := unix.MemfdCreate("cl-unshare-config", 0)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "config")
	defer f.Close()
	if err := json.NewEncoder(f).Encode(c); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	for _, x := range []int{fd, levelFD} {
		if _, err := unix.FcntlInt(uintptr(x), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep fd %d across exec: %w", x, err)
		}
	}
	argv := []string{Marker, InPlaceArg, strconv.Itoa(fd), strconv.Itoa(levelFD)}
	err = syscall.Exec("/proc/self/exe", argv, os.Environ())
	return fmt.Errorf("exec init stage: %w", err)
}

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
	if levelFD != LevelFD {
		if err := unix.Dup3(levelFD, LevelFD, unix.O_CLOEXEC); err != nil {
			fail(StepPropagation, err)
		}
		unix.Close(levelFD)
	}
	step, err := run(&c)
	if err == nil {
		step, err = StepExec, execCommand(nil, &c)
	}
	fail(step, err)
}
