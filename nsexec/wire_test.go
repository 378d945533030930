package nsexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// pair returns the launcher's and the init stage's ends of a wire like the
// one the launcher makes.
func pair(t *testing.T) (launcher, init *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	launcher, init = os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync-child")
	t.Cleanup(func() {
		launcher.Close()
		init.Close()
	})
	return launcher, init
}

func fullConfig() *Config {
	return &Config{
		Name:     "web",
		RunDir:   "/run/cl-unshare",
		LevelDir: "/run/cl-unshare/levels/web",
		Layout: mounts.Layout{
			Kind: mounts.Legacy,
			FS: []mounts.FS{
				{Dir: "", Type: "tmpfs", Data: "mode=755"},
				{Dir: "cpu,cpuacct", Type: "cgroup", Data: "cpu,cpuacct"},
				{Dir: "systemd", Type: "cgroup", Data: "xattr,name=systemd"},
				{Dir: "unified", Type: "cgroup2"},
			},
			Symlinks: []mounts.Symlink{{Name: "cpu", Target: "cpu,cpuacct"}, {Name: "cpuacct", Target: "cpu,cpuacct"}},
		},
		Argv: []string{"sh", "-c", "echo \"a b\" 'ü' \\ $HOME", ""},
	}
}

func TestConfigRoundTrip(t *testing.T) {
	launcher, init := pair(t)
	want := fullConfig()
	if err := SendConfig(launcher, want); err != nil {
		t.Fatalf("SendConfig: %v", err)
	}
	got, err := readConfig(init)
	if err != nil {
		t.Fatalf("readConfig: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("readConfig = %+v\nwant %+v", got, want)
	}

	// Unified: one filesystem, no symlinks.
	u := &Config{Name: "u", RunDir: "/r", LevelDir: "/r/levels/u", Argv: []string{"true"},
		Layout: mounts.Layout{Kind: mounts.Unified, FS: []mounts.FS{{Type: "cgroup2"}}}}
	if err := SendConfig(launcher, u); err != nil {
		t.Fatal(err)
	}
	got, err = readConfig(init)
	if err != nil || !reflect.DeepEqual(got, u) {
		t.Errorf("readConfig = %+v, %v; want %+v", got, err, u)
	}
}

func TestConfigMessagesStaySeparate(t *testing.T) {
	launcher, init := pair(t)
	a, b := fullConfig(), fullConfig()
	b.Name, b.Argv = "second", []string{"ls"}
	for _, c := range []*Config{a, b} {
		if err := SendConfig(launcher, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []*Config{a, b} {
		got, err := readConfig(init)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("readConfig = %+v, %v; want %+v", got, err, want)
		}
	}
}

func TestReadConfigIncomplete(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.LevelDir = "" },
		func(c *Config) { c.RunDir = "" },
		func(c *Config) { c.Argv = nil },
		func(c *Config) { c.Argv = []string{} },
		func(c *Config) { *c = Config{Name: "only-a-name"} },
	} {
		launcher, init := pair(t)
		c := fullConfig()
		mutate(c)
		if err := SendConfig(launcher, c); err != nil {
			t.Fatal(err)
		}
		got, err := readConfig(init)
		if err == nil || !strings.Contains(err.Error(), "incomplete config") {
			t.Errorf("readConfig of %+v = %+v, %v; want \"incomplete config\"", c, got, err)
		}
		if got != nil {
			t.Errorf("readConfig returned %+v with its error", got)
		}
	}

	launcher, init := pair(t)
	if _, err := launcher.Write([]byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if got, err := readConfig(init); err == nil {
		t.Errorf("readConfig of bad JSON = %+v", got)
	}
	launcher.Close()
	if got, err := readConfig(init); !errors.Is(err, io.EOF) {
		t.Errorf("readConfig after the launcher closed = %+v, %v; want EOF", got, err)
	}
}

func TestSendConfigError(t *testing.T) {
	launcher, init := pair(t)
	init.Close()
	err := SendConfig(launcher, fullConfig())
	if err == nil || !strings.HasPrefix(err.Error(), "send config to init stage: ") {
		t.Errorf("SendConfig to a closed peer = %v", err)
	}
	if !errors.Is(err, syscall.EPIPE) {
		t.Errorf("SendConfig error %v does not wrap EPIPE", err)
	}
}

func TestWaitExec(t *testing.T) {
	launcher, init := pair(t)
	if err := send(init, message{Type: "exec"}); err != nil {
		t.Fatal(err)
	}
	init.Close() // close-on-exec, as execve does
	if err := Wait(launcher); err != nil {
		t.Errorf("Wait = %v, want nil", err)
	}
}

func TestWaitStepError(t *testing.T) {
	launcher, init := pair(t)
	reportError(init, StepExec, fmt.Errorf("x: %w", unix.ENOENT))
	init.Close()
	err := Wait(launcher)
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("Wait = %v (%T), want a *StepError", err, err)
	}
	if se.Step != StepExec || se.Errno != unix.ENOENT || se.Text != "x: no such file or directory" {
		t.Errorf("StepError = %+v", *se)
	}
	if !errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) {
		t.Errorf("errors.Is(%v, ENOENT) is false or EACCES is true", err)
	}
	if want := "exec: x: no such file or directory"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}

func TestWaitErrorAfterExecMessage(t *testing.T) {
	// execve can still fail after "exec" was sent: the error wins.
	launcher, init := pair(t)
	if err := send(init, message{Type: "exec"}); err != nil {
		t.Fatal(err)
	}
	reportError(init, StepExec, fmt.Errorf("/bin/x: %w", unix.EACCES))
	init.Close()
	err := Wait(launcher)
	var se *StepError
	if !errors.As(err, &se) || !errors.Is(err, unix.EACCES) || se.Step != StepExec {
		t.Errorf("Wait = %v, want a StepError with EACCES", err)
	}
}

func TestWaitErrnoKinds(t *testing.T) {
	for _, c := range []struct {
		err   error
		errno syscall.Errno
	}{
		{errors.New("boom"), 0},
		{fmt.Errorf("mount: %w", &os.PathError{Op: "mount", Path: "/x", Err: unix.EPERM}), unix.EPERM},
		{&mounts.Error{Op: "bind", Source: "/a", Target: "/b", Err: unix.EINVAL}, unix.EINVAL},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", unix.ENOSYS)), unix.ENOSYS},
	} {
		launcher, init := pair(t)
		reportError(init, StepPropagation, c.err)
		init.Close()
		err := Wait(launcher)
		var se *StepError
		if !errors.As(err, &se) {
			t.Errorf("%v: Wait = %v, want a *StepError", c.err, err)
			continue
		}
		if se.Errno != c.errno || se.Step != StepPropagation || se.Text != c.err.Error() {
			t.Errorf("%v: StepError = %+v, want errno %d", c.err, *se, c.errno)
		}
		if c.errno == 0 && errors.Unwrap(err) != nil {
			t.Errorf("%v: a StepError without errno unwraps to %v", c.err, errors.Unwrap(err))
		}
		if c.errno != 0 && !errors.Is(err, c.errno) {
			t.Errorf("%v: errors.Is(err, %v) is false", c.err, c.errno)
		}
	}
}

func TestWaitDied(t *testing.T) {
	launcher, init := pair(t)
	init.Close()
	if err := Wait(launcher); !errors.Is(err, ErrDied) {
		t.Errorf("Wait after a silent close = %v, want ErrDied", err)
	}

	// Our own end closed under us counts as the same.
	launcher, _ = pair(t)
	launcher.Close()
	if err := Wait(launcher); !errors.Is(err, ErrDied) {
		t.Errorf("Wait on a closed file = %v, want ErrDied", err)
	}
}

func TestWaitBadMessages(t *testing.T) {
	for _, c := range []struct{ raw, msg string }{
		{`{"type":"bogus"}`, `init stage sent an unknown message "bogus"`},
		{`{}`, `init stage sent an unknown message ""`},
		{`not json`, "read from init stage: "},
	} {
		launcher, init := pair(t)
		if _, err := init.Write([]byte(c.raw)); err != nil {
			t.Fatal(err)
		}
		init.Close()
		err := Wait(launcher)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Wait after %s = %v, want %q", c.raw, err, c.msg)
		}
		if errors.Is(err, ErrDied) {
			t.Errorf("Wait after %s = ErrDied", c.raw)
		}
	}
}

func TestStepErrorUnwrap(t *testing.T) {
	e := &StepError{Step: StepCgroupNS, Errno: unix.EPERM, Text: "unshare(CLONE_NEWCGROUP): operation not permitted"}
	if e.Error() != "unshare cgroup namespace: unshare(CLONE_NEWCGROUP): operation not permitted" {
		t.Errorf("Error() = %q", e.Error())
	}
	if !errors.Is(e, unix.EPERM) || !errors.Is(e, os.ErrPermission) {
		t.Error("StepError with EPERM is not EPERM / ErrPermission")
	}
	if (&StepError{Step: "x"}).Unwrap() != nil {
		t.Error("StepError without errno unwraps to something")
	}
}

func TestIsInit(t *testing.T) {
	if IsInit() {
		t.Error("the test binary thinks it is the init stage")
	}
	old := os.Args
	defer func() { os.Args = old }()
	os.Args = []string{Marker}
	if !IsInit() {
		t.Errorf("IsInit() false with argv[0] %q", Marker)
	}
	os.Args = nil
	if IsInit() {
		t.Error("IsInit() true with no argv")
	}
}

func TestConfigLargeArgv(t *testing.T) {
	// execve takes up to ARG_MAX (2 MiB by default) of arguments; the
	// wire must carry any command line the kernel would run.
	launcher, init := pair(t)
	want := fullConfig()
	want.Argv = []string{"echo"}
	for i := 0; i < 3000; i++ {
		want.Argv = append(want.Argv, strings.Repeat("x", 100)) // ~300 KB
	}
	// More than a socket buffer holds: the reader must run meanwhile.
	sent := make(chan error, 1)
	go func() { sent <- SendConfig(launcher, want) }()
	got, err := readConfig(init)
	if err := <-sent; err != nil {
		t.Fatalf("SendConfig of a %d-argument command: %v", len(want.Argv), err)
	}
	if err != nil {
		t.Fatalf("readConfig: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("large argv did not round-trip")
	}
}

// TestLookPath checks the errnos the launcher maps to 127 (ENOENT) and
// 126 (anything else) for a command that cannot be run.
func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "prog")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "data")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)

	for _, c := range []struct {
		name, path string
		errno      syscall.Errno
	}{
		{exe, exe, 0},
		{"prog", exe, 0},
		{filepath.Join(dir, "missing"), "", unix.ENOENT},
		{filepath.Join(dir, "missing", "x"), "", unix.ENOENT},
		{"missing-command", "", unix.ENOENT},
		{plain, "", unix.EACCES},
		{dir, "", unix.EACCES},
		{filepath.Join(plain, "x"), "", unix.ENOTDIR},
	} {
		p, err := lookPath(c.name)
		if c.errno == 0 {
			if err != nil || p != c.path {
				t.Errorf("lookPath(%q) = %q, %v; want %q", c.name, p, err, c.path)
			}
			continue
		}
		if !errors.Is(err, c.errno) {
			t.Errorf("lookPath(%q) = %q, %v; want %v", c.name, p, err, c.errno)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.name+": ") || strings.Count(err.Error(), c.name) != 1 {
			t.Errorf("lookPath(%q) error %q should name the command once, first", c.name, err)
		}
	}
}

// A request with a file descriptor ("proc"): the launcher's handler gets
// a descriptor of the same file, answers ok, and its error names the step.
func TestWaitWithProcRequest(t *testing.T) {
	for _, fail := range []bool{false, true} {
		launcher, init := pair(t)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		wfd := int(w.Fd())
		go func() {
			err := ask(init, message{Type: "proc"}, wfd)
			if err == nil {
				err = send(init, message{Type: "exec"})
			}
			init.Close()
			done <- err
		}()
		err = WaitWith(launcher, Requests{AttachProc: func(fd int) error {
			if _, err := unix.Write(fd, []byte("x")); err != nil {
				return err
			}
			if fail {
				return unix.EPERM
			}
			return nil
		}})
		askErr := <-done
		w.Close()
		b := make([]byte, 1)
		if n, _ := r.Read(b); n != 1 {
			t.Errorf("the handler's descriptor is not the one sent")
		}
		r.Close()
		var se *StepError
		switch {
		case !fail && (err != nil || askErr != nil):
			t.Errorf("WaitWith = %v, ask = %v", err, askErr)
		case fail && (!errors.As(err, &se) || se.Step != StepProc || !errors.Is(err, unix.EPERM)):
			t.Errorf("WaitWith with a failing handler = %v, want a %q StepError with EPERM", err, StepProc)
		case fail && askErr == nil:
			t.Errorf("ask got no error from a failing handler")
		}
	}
}

// A step error crosses with its operation and path, not only as text.
func TestStepErrorOpPath(t *testing.T) {
	for _, c := range []struct {
		err      error
		op, path string
	}{
		{&mounts.Error{Op: "mount cgroup2", Source: "cgroup2", Target: "/sys/fs/cgroup/unified", Err: unix.EPERM}, "mount cgroup2", "/sys/fs/cgroup/unified"},
		{fmt.Errorf("leaf: %w", &os.PathError{Op: "open", Path: "/sys/fs/cgroup/init/cgroup.procs", Err: unix.ENOENT}), "open", "/sys/fs/cgroup/init/cgroup.procs"},
		{errors.New("plain"), "", ""},
	} {
		launcher, init := pair(t)
		reportError(init, StepCgroupMount, c.err)
		init.Close()
		var se *StepError
		if err := Wait(launcher); !errors.As(err, &se) || se.Op != c.op || se.Path != c.path || se.Text != c.err.Error() {
			t.Errorf("%v: %+v", c.err, se)
		}
	}
}
