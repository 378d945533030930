package nsexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/cl-unshare/cl-unshare/internal/exitcode"
	"golang.org/x/sys/unix"
)

// unshareTime gives the level a time namespace with the config's clock
// offsets, as unshare -T --monotonic --boottime. unshare(CLONE_NEWTIME)
// leaves this process where it was and puts its children in the new
// namespace; so does execve (Linux 6.2 on), which is how CMD enters it.
// The offsets can be written only until the first process has entered.
func unshareTime(c *Config) error {
	if err := unix.Unshare(unix.CLONE_NEWTIME); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWTIME): %w", err)
	}
	if c.Monotonic == 0 && c.Boottime == 0 {
		return nil
	}
	// Of the thread-group leader, which this locked main thread is.
	offsets := fmt.Sprintf("monotonic %d %d\nboottime %d %d\n",
		c.Monotonic/1e9, c.Monotonic%1e9, c.Boottime/1e9, c.Boottime%1e9)
	if err := os.WriteFile("/proc/self/timens_offsets", []byte(offsets), 0); err != nil {
		return fmt.Errorf("set clock offsets: %w", unwrap(err))
	}
	return nil
}

// reexecIntoTime executes this stage again, as the same process, so that
// an init (--init), which stays rather than becoming CMD, is in the
// level's time namespace too, as CMD and everything exec'd in are: with
// the config in a file, argv[2], and the socket to the launcher kept for
// the rest. It returns only on failure.
func reexecIntoTime(c *Config, exe int) error {
	mfd, err := configFile(c)
	if err != nil {
		return err
	}
	if _, err := unix.FcntlInt(SyncFD, unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("pass fd %d on: %w", SyncFD, err)
	}
	argv, err := syscall.SlicePtrFromStrings([]string{Marker, TimeHopArg, strconv.Itoa(mfd)})
	if err != nil {
		return err
	}
	envv, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		return err
	}
	empty := []byte{0}
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(exe), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	unix.CloseOnExec(SyncFD)
	unix.Close(mfd)
	return fmt.Errorf("execute the init again in the time namespace: %w", e)
}

// configFile writes c to a memfd that execve passes on, and returns it.
func configFile(c *Config) (int, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return -1, fmt.Errorf("write config: %w", err)
	}
	mfd, err := unix.MemfdCreate("cl-unshare-config", 0)
	if err != nil {
		return -1, fmt.Errorf("memfd: %w", err)
	}
	for len(b) > 0 && err == nil {
		var n int
		n, err = unix.Write(mfd, b)
		b = b[n:]
	}
	if err == nil {
		_, err = unix.Seek(mfd, 0, 0)
	}
	if err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("write config: %w", err)
	}
	return mfd, nil
}

// TimeHopArg is argv[1] of a join stage that has entered the level's
// time namespace, UserHopArg of one that has entered its user namespace;
// argv[2] is the number of a file with its config.
const (
	TimeHopArg = "time-hop"
	UserHopArg = "user-hop"
)

// hopIntoTime puts the rest of a join into the level's time namespace
// (open as JoinTimeNSFD). The kernel lets only a single-threaded process
// join one, and no Go program is: a child forked from this thread alone
// joins it and executes this stage again with the config it was sent,
// where the join goes on. This process stays as its parent, passes
// signals on and exits as it does (the stage does that itself with a PID
// namespace: CMD is a child there anyway). It returns only on failure.
func hopIntoTime(c *Config) error {
	return hopInto(c, JoinTimeNSFD, unix.CLONE_NEWTIME, TimeHopArg, "time", -1, false)
}

// hopIntoUser is hopIntoTime for the level's user namespace (open as
// JoinUserNSFD), which a caller who is not root must enter before any
// other: the level's namespaces are that one's to let in.
func hopIntoUser(c *Config) error {
	via, drop := -1, c.DropGroups
	if drop && !c.TopIsUser {
		via = JoinUserTopNSFD
	}
	unix.CloseOnExec(JoinUserTopNSFD)
	return hopInto(c, JoinUserNSFD, unix.CLONE_NEWUSER, UserHopArg, "user", via, drop)
}

// hopInto forks a child into namespace nsfd of kind nstype, which
// executes this stage again there. With via (a user namespace) it goes
// through that first; with drop it drops its supplementary groups in
// via, or in nsfd's if there is no via.
func hopInto(c *Config, nsfd int, nstype uintptr, arg, kind string, via int, drop bool) error {
	mfd, err := configFile(c) // inherited by the new stage
	if err != nil {
		return err
	}
	// Main marked them close-on-exec: the new stage needs them.
	passed := []int{SyncFD, JoinCgroupNSFD, JoinMountNSFD, JoinPIDNSFD, JoinNetNSFD, JoinUTSNSFD, JoinIPCNSFD}
	if nsfd != JoinTimeNSFD && c.JoinTime {
		passed = append(passed, JoinTimeNSFD) // the next hop's
	}
	for _, fd := range passed {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("pass fd %d on: %w", fd, err)
		}
	}
	pid, err := forkInto(nsfd, nstype, via, drop, "/proc/self/exe", []string{Marker, arg, strconv.Itoa(mfd)}, os.Environ())
	unix.Close(mfd) // the child has its own copy
	if err != nil {
		for _, fd := range passed {
			unix.CloseOnExec(fd)
		}
		return fmt.Errorf("enter the level's %s namespace: %w", kind, err)
	}
	for _, fd := range append(passed, nsfd) {
		unix.Close(fd) // the new stage's now: the launcher sees its end alone
	}
	waitRelay(pid)
	return nil
}

// mainTimeHop is Main for the stage hopIntoTime started: the config
// comes from the file argv[2] names, the rest as for any join.
func mainTimeHop() (*Config, error) {
	fd, err := strconv.Atoi(os.Args[2])
	if err != nil {
		return nil, errors.New("bad time-hop arguments")
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "config")
	defer f.Close()
	var c Config
	if err := json.NewDecoder(f).Decode(&c); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	// In it now.
	if os.Args[1] == UserHopArg {
		c.JoinUser, c.HoppedUser = false, true
	} else {
		c.JoinTime = false
	}
	return &c, nil
}

// waitRelay waits for child pid, passing signals on, and exits as it
// did. SIGINT and SIGQUIT are ignored, as system(3) does: they come from
// the terminal, which sends them to the child as well.
func waitRelay(pid int) {
	signal.Ignore(unix.SIGINT, unix.SIGQUIT)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	if p, err := os.FindProcess(pid); err == nil {
		go func() {
			for s := range sigs {
				_ = p.Signal(s) // by pidfd, since Go 1.23
			}
		}()
	}
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cl-unshare: wait for the stage in the level's time namespace: %v\n", err)
			os.Exit(exitcode.Failure)
		}
		if ws.Exited() || ws.Signaled() {
			os.Exit(exitcode.Of(syscall.WaitStatus(ws)))
		}
	}
}

// forkInto forks a child of this thread alone, which joins the
// namespace of type nstype open as nsfd and executes path. It returns once the child
// has executed path (the error pipe closes) or failed (it says how).
func forkInto(nsfd int, nstype uintptr, via int, drop bool, path string, argv, env []string) (int, error) {
	pathp, err := unix.BytePtrFromString(path)
	if err != nil {
		return 0, err
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return 0, err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return 0, err
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		return 0, err
	}
	defer unix.Close(pipe[0])
	// No signal may run a Go handler in the child before it has set
	// every handler back to the default: block them all across the fork.
	all, old := ^uint64(0), uint64(0)
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0)
	pid, errno := rawForkExec(nsfd, nstype, via, drop, pathp, &argvp[0], &envp[0], &old, pipe[1])
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	unix.Close(pipe[1])
	if errno != 0 {
		return 0, fmt.Errorf("fork: %w", errno)
	}
	var buf [8]byte
	n, _ := unix.Read(pipe[0], buf[:])
	if n == 8 {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
		return 0, unix.Errno(*(*uintptr)(unsafe.Pointer(&buf[0])))
	}
	return pid, nil
}

// rawForkExec is the child's whole life: raw system calls only, on a
// copy of this goroutine's stack, since the Go runtime of a forked
// multi-threaded process must not run (its other threads are gone). It
// joins the namespace, puts every signal the runtime handles back to
// its default, restores the signal mask and executes path; on failure it
// writes the errno to errPipe and exits 253, as package syscall's child
// does.
//
//go:nosplit
//go:norace
func rawForkExec(nsfd int, nstype uintptr, via int, drop bool, path *byte, argv, env **byte, mask *uint64, errPipe int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 || r != 0 {
		return int(r), e
	}
	if via >= 0 {
		_, _, e = unix.RawSyscall(unix.SYS_SETNS, uintptr(via), unix.CLONE_NEWUSER, 0)
		if e == 0 && drop {
			_, _, e = unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0)
		}
	}
	if e == 0 {
		_, _, e = unix.RawSyscall(unix.SYS_SETNS, uintptr(nsfd), nstype, 0)
	}
	if e == 0 && drop && via < 0 {
		_, _, e = unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0)
	}
	if e == 0 && nstype == unix.CLONE_NEWUSER {
		// Root of the namespace, which it may become there: executed
		// as an id the namespace does not map (the caller's, where the
		// level's root is another id of theirs), it would keep no
		// capability in it. The join drops to CMD's ids later anyway.
		if _, _, e = unix.RawSyscall(unix.SYS_SETRESGID, 0, 0, 0); e == 0 {
			_, _, e = unix.RawSyscall(unix.SYS_SETRESUID, 0, 0, 0)
		}
	}
	if e == 0 {
		// struct sigaction, handler first; 32 bytes on amd64 and arm64.
		var sa [4]uint64
		for sig := uintptr(1); sig <= 64; sig++ {
			if sig == uintptr(unix.SIGKILL) || sig == uintptr(unix.SIGSTOP) {
				continue
			}
			_, _, qe := unix.RawSyscall6(unix.SYS_RT_SIGACTION, sig, 0, uintptr(unsafe.Pointer(&sa)), 8, 0, 0)
			if qe == 0 && sa[0] > 1 { // neither SIG_DFL nor SIG_IGN
				sa[0] = 0
				unix.RawSyscall6(unix.SYS_RT_SIGACTION, sig, uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
			}
		}
		unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(mask)), 0, 8, 0, 0)
		_, _, e = unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(path)), uintptr(unsafe.Pointer(argv)), uintptr(unsafe.Pointer(env)))
	}
	errno := uintptr(e)
	unix.RawSyscall(unix.SYS_WRITE, uintptr(errPipe), uintptr(unsafe.Pointer(&errno)), 8)
	for {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 253, 0, 0)
	}
}
