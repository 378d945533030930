package level

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// gcEnv marks the re-executed gc of a user who is not root, in a user
// namespace that maps their range: it collects the levels of the run
// directory it names, as the arguments name them (all, if none).
const gcEnv = "CL_UNSHARE_GC_IN_RANGE"

// errNoRange is gcInRange's answer where the user has no range to map.
var errNoRange = errors.New("no subordinate range to map")

// gcInRange runs GC again in a user namespace of its own that maps the
// caller to 0 and their range after it, as a launcher's does: there it
// may remove cgroups and files of the range's ids, which a level whose
// root is one of them made, and which the caller on the host may not.
func gcInRange(runDir string, names []string) ([]string, error) {
	uids, gids := callerIDs()
	if uids.sub.Count == 0 || gids.sub.Count == 0 || !haveMapTools() {
		return nil, errNoRange
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command("/proc/self/exe", names...)
	cmd.Args[0] = "cl-unshare-gc"
	cmd.Env = append(os.Environ(), gcEnv+"="+runDir, fmt.Sprintf("%s=wait:%d", rootlessEnv, 3))
	cmd.ExtraFiles = []*os.File{r}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, userNSError(err)
	}
	if err := mapRanges(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("map your subordinate ids: %w", err)
	}
	w.Close()
	err = cmd.Wait()
	var lines []string
	for sc := bufio.NewScanner(&out); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return lines, errors.New(msg)
	}
	return lines, nil
}

// isGCInRange reports whether this process is gcInRange's.
func isGCInRange() bool { return os.Getenv(gcEnv) != "" && rootless }

// gcInRangeMain collects, prints a line for each level it removed and
// says what failed on stderr.
func gcInRangeMain() int {
	runDir := os.Getenv(gcEnv)
	os.Unsetenv(gcEnv)
	lines, err := gc(runDir, os.Args[1:]...)
	for _, l := range lines {
		fmt.Println(l)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return ExitFailure
	}
	return 0
}
