package level

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
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

// procViewMarker is argv[0] of a level's view server (Config.ProcView).
const procViewMarker = "cl-unshare [proc-view]"

func isProcView() bool { return len(os.Args) > 0 && os.Args[0] == procViewMarker }

// checkFUSE says what is missing for Config.ProcView, if anything.
func checkFUSE() error {
	b, _ := os.ReadFile("/proc/filesystems")
	if !strings.Contains(string(b), "\tfuse\n") || failpoint.At("no fuse") != nil {
		return errors.New("this kernel has no FUSE (load it: modprobe fuse)")
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("/dev/fuse: %v (the view is served through FUSE)", unwrapPath(err))
	}
	unix.Close(fd)
	return nil
}

// startProcView starts the level's view server, a process of its own
// outside the level that mounts the view at LevelDir/procview, and keeps
// a detached clone of each of its files to attach in the level. When the server dies while the level runs, watchProcView takes
// the level's binds away, so /proc reads the kernel's own files again.
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
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("proc view: %w", err)
	}
	defer r.Close()
	srv := reexec(procViewMarker, args...)
	srv.ExtraFiles = []*os.File{w}
	// Its own group: Ctrl-C to the supervisor's must not take it first.
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = srv.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("proc view: start its server: %w", err)
	}
	exited := make(chan struct{})
	l.undo = append(l.undo, func() error {
		_ = srv.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
		return detach(dir)
	})
	msg, _ := io.ReadAll(r)
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		close(exited)
		if s == "" {
			s = "its server exited: " + fmt.Sprint(srv.ProcessState)
		}
		return fieldErr("Config.ProcView", "%s", s)
	}
	go func() {
		_ = srv.Wait()
		close(exited)
		l.mu.Lock()
		closing := l.closed
		l.mu.Unlock()
		if !closing && l.st != nil && l.st.cmd.Process != nil {
			unbindProcView(l.st.cmd.Process.Pid)
			_ = detach(dir)
		}
	}()
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

// unbindProcView unmounts every file of a view in the mount namespace of
// process pid (the level's), from a thread that enters it and is then
// thrown away.
func unbindProcView(pid int) {
	// The host's /proc, opened first: the level's own (with a PID
	// namespace) has no thread-self for a thread of ours.
	proc, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(proc)
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
			if infos[i].FSType == procview.FSType {
				_ = unix.Unmount(infos[i].Mountpoint, unix.MNT_DETACH)
			}
		}
		return nil
	})
}

// procViewMain is the view server: it serves until SIGTERM or until the
// level's cgroups are gone (a level gc collected), then unmounts.
func procViewMain(args []string) int {
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
