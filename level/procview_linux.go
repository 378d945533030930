package level

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/cl-unshare/cl-unshare/procview"
	"golang.org/x/sys/unix"
)

// procViewMarker is argv[0] of the watcher of a level's view of /proc
// (Config.ProcView), procViewServerMarker that of its server.
const (
	procViewMarker       = "cl-unshare [proc-view]"
	procViewServerMarker = "cl-unshare [proc-view server]"
)

func isProcView() bool       { return len(os.Args) > 0 && os.Args[0] == procViewMarker }
func isProcViewServer() bool { return len(os.Args) > 0 && os.Args[0] == procViewServerMarker }

// checkFUSE says what is missing for Config.ProcView, if anything.
func checkFUSE() error {
	b, _ := os.ReadFile("/proc/filesystems")
	if !strings.Contains(string(b), "\tfuse\n") || failpoint.At("no fuse") != nil {
		return errors.New("this kernel has no FUSE (load it: modprobe fuse)")
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil && failpoint.At("no /dev/fuse") != nil {
		unix.Close(fd)
		err = unix.ENOENT
	}
	if err != nil {
		return fmt.Errorf("/dev/fuse: %v (the view is served through FUSE)", unwrapPath(err))
	}
	unix.Close(fd)
	return nil
}

// startProcView starts the level's view of /proc: a watcher outside the
// level, whose child, the server, mounts the view at LevelDir/procview;
// and keeps a detached clone of each of its files to attach in the level.
// If the server dies while the level runs, the watcher takes the view's
// files away in every mount namespace of the level, so that /proc reads
// the kernel's own files again; neither needs the supervisor, so --exec
// has a view too.
func (l *Level) startProcView() error {
	dir := filepath.Join(l.LevelDir, "procview")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("proc view: %w", err)
	}
	l.undo = append(l.undo, func() error { return removeDir(dir) })
	args := []string{dir, strconv.FormatInt(l.state.Started.UnixNano(), 10)}
	for _, d := range l.cgroups.Dirs {
		args = append(args, fmt.Sprintf("%d=%s", d.ID, d.Inner))
	}
	w, msg, err := startReady(procViewMarker, args, func(c *exec.Cmd) {
		// Its own session: neither the supervisor's Ctrl-C nor the
		// terminal of an --exec'd CMD is its.
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	})
	if w != nil {
		exited := make(chan struct{})
		go func() { _ = w.Wait(); close(exited) }()
		l.undo = append(l.undo, func() error {
			_ = w.Process.Signal(unix.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = w.Process.Kill()
				<-exited
			}
			return detach(dir)
		})
	}
	if err != nil {
		return &FieldError{"Config.ProcView", err}
	}
	l.viewPids = []int{w.Process.Pid}
	if f := strings.Fields(msg); len(f) == 2 {
		if pid, err := strconv.Atoi(f[1]); err == nil {
			l.viewPids = append(l.viewPids, pid)
		}
	}
	// One clone of each file, made here: a mount can be cloned only in
	// the namespace it is attached in.
	for _, f := range procview.Files {
		c, err := mounts.Clone(filepath.Join(dir, f.Name))
		if err != nil {
			return fmt.Errorf("proc view: %w", err)
		}
		l.clones.view = append(l.clones.view, c)
	}
	return nil
}

// startReady starts this program again in role with args and a pipe at
// fd 3, on which it says "ok" once it is ready, or why it is not. The
// process is returned even on failure, to be waited for.
func startReady(role string, args []string, set func(*exec.Cmd)) (*exec.Cmd, string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	c := reexec(role, args...)
	c.ExtraFiles = []*os.File{w}
	set(c)
	err = c.Start()
	w.Close()
	if err != nil {
		return nil, "", fmt.Errorf("start %s: %w", role, err)
	}
	msg, _ := io.ReadAll(r)
	s := strings.TrimSpace(string(msg))
	if s != "ok" && !strings.HasPrefix(s, "ok ") {
		_ = c.Process.Kill()
		if s == "" {
			s = role + " exited before it was ready"
		}
		return c, "", errors.New(s)
	}
	return c, s, nil
}

// attachProcView attaches the clones of the view's files over the
// kernel's in the mount namespace of the init stage pid, from a thread
// that enters it and is then thrown away: the stage's own mounts would be
// locked there with a user namespace, these are not, so that they can be
// taken away if the server dies. A path the level lacks (no /sys in a new
// root) is left alone.
func (l *Level) attachProcView(pid int) error {
	return inMountNS(pid, func() error {
		for i, f := range procview.Files {
			if _, err := os.Stat(f.Target); err != nil {
				continue
			}
			if err := mounts.Attach(int(l.clones.view[i].Fd()), f.Target); err != nil {
				return err
			}
		}
		return nil
	})
}

// inMountNS runs f on a thread in the mount namespace of process pid; the
// thread is thrown away after.
func inMountNS(pid int, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		ns, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("open mount namespace of %d: %w", pid, err)
			return
		}
		defer unix.Close(ns)
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("enter mount namespace of %d: %w", pid, err)
			return
		}
		done <- f()
	}()
	return <-done
}

// unbindProcView unmounts the view's files (the FUSE file system of
// device major:minor: a nested level's own view is another) in every
// mount namespace of the processes in the level's cgroups (roots, one per
// hierarchy: the first that lists any is walked), each from a thread
// that enters it and is then thrown away.
func unbindProcView(roots []string, major, minor uint32) {
	// The host's /proc, opened first: a level's own (with a PID
	// namespace) has no thread-self for a thread of ours.
	proc, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(proc)
	seen := map[uint64]bool{}
	for _, pid := range levelPids(roots) {
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/mnt", pid), &st) != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		_ = inMountNS(pid, func() error {
			// Opened now, the table is of the namespace entered.
			fd, err := unix.Openat(proc, "thread-self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			f := os.NewFile(uintptr(fd), "mountinfo")
			infos, err := mounts.Parse(f)
			f.Close()
			if err != nil {
				return err
			}
			for i := len(infos) - 1; i >= 0; i-- {
				if m := infos[i]; m.FSType == procview.FSType && uint32(m.Major) == major && uint32(m.Minor) == minor {
					// A path of the level's namespace: never followed.
					_ = unix.Unmount(m.Mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
				}
			}
			return nil
		})
	}
}

// levelPids lists the processes in the cgroups below the first of roots
// that has any.
func levelPids(roots []string) []int {
	for _, root := range roots {
		var pids []int
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				ps, _ := cgroup.Procs(p)
				pids = append(pids, ps...)
			}
			return nil
		})
		if len(pids) > 0 {
			return pids
		}
	}
	return nil
}

// procViewMain is the view's watcher: it starts the server and waits. On
// SIGTERM (teardown) it stops the server; if the server dies while the
// level's cgroups are there, it takes the view's files away from every
// mount namespace of the level's processes before it goes.
func procViewMain(args []string) int {
	ready := os.NewFile(3, "ready")
	if len(args) < 3 {
		fmt.Fprintln(ready, "bad arguments")
		return 1
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	srv, _, err := startReady(procViewServerMarker, args, func(c *exec.Cmd) {})
	if err != nil {
		fmt.Fprintln(ready, err)
		if srv != nil {
			_ = srv.Wait()
		}
		return 1
	}
	var st unix.Stat_t
	if err := unix.Stat(args[0], &st); err != nil {
		fmt.Fprintln(ready, err)
		_ = srv.Process.Kill()
		return 1
	}
	fmt.Fprintln(ready, "ok", srv.Process.Pid)
	ready.Close()
	exited := make(chan struct{})
	go func() { _ = srv.Wait(); close(exited) }()
	select {
	case <-stop:
		_ = srv.Process.Signal(unix.SIGTERM)
		<-exited
		return 0
	case <-exited:
	}
	var roots []string
	for _, a := range args[2:] {
		_, dir, _ := strings.Cut(a, "=")
		roots = append(roots, dir)
	}
	if _, err := os.Stat(roots[0]); err == nil {
		unbindProcView(roots, unix.Major(st.Dev), unix.Minor(st.Dev))
		_ = unix.Unmount(args[0], unix.MNT_DETACH)
	}
	return 0
}

// procViewServerMain is the view's server: it serves until SIGTERM or
// until the level's cgroups are gone (a level gc collected), then
// unmounts.
func procViewServerMain(args []string) int {
	ready := os.NewFile(3, "ready")
	fail := func(err error) int {
		fmt.Fprintln(ready, err)
		return 1
	}
	if len(args) < 3 {
		return fail(errors.New("bad arguments"))
	}
	started, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return fail(err)
	}
	root := map[int]string{}
	for _, a := range args[2:] {
		id, dir, _ := strings.Cut(a, "=")
		n, err := strconv.Atoi(id)
		if err != nil {
			return fail(fmt.Errorf("bad cgroup %q", a))
		}
		root[n] = dir
	}
	infos, err := mounts.Current()
	if err != nil {
		return fail(err)
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return fail(err)
	}
	hs, err := cgroup.Discover(bufio.NewReader(f), infos)
	f.Close()
	if err != nil {
		return fail(err)
	}
	srv, err := procview.Serve(args[0], procview.NewSource(hs, root, time.Unix(0, started)))
	if err != nil {
		return fail(fmt.Errorf("mount the view on %s: %w", args[0], err))
	}
	fmt.Fprintln(ready, "ok")
	ready.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for alive := true; alive; {
		select {
		case <-stop:
			alive = false
		case <-tick.C:
			for _, d := range root {
				if _, err := os.Stat(d); err != nil {
					alive = false
				}
				break
			}
		}
	}
	_ = srv.Unmount()
	return 0
}
