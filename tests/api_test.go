package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
)

// Through the Go API only, 20 levels at once, each sees
// only itself, and nothing is left after they close.
func TestAPIConcurrentLevels(t *testing.T) { concurrentLevels(t, 20, false) }

// The same with user namespaces: each Start prepares its mounts on a
// thread of its own and parks it until Close.
func TestAPIConcurrentUserLevels(t *testing.T) { concurrentLevels(t, 8, true) }

func concurrentLevels(t *testing.T, n int, user bool) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	script := "cat /proc/self/cgroup; ls /run/cl-unshare/levels; ls -R /sys/fs/cgroup | grep -c api- ; sleep 0.2"
	if user {
		script = "id -u; " + script
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
			if err != nil {
				errs <- err
				return
			}
			defer out.Close()
			l, err := lvl.Start(lvl.Config{
				Name: fmt.Sprintf("api-%d-%d", os.Getpid(), i), CgroupParent: testParent, Stdout: out, User: user,
				Argv: []string{"/bin/sh", "-c", script},
			})
			if err != nil {
				errs <- fmt.Errorf("level %d: %w", i, err)
				return
			}
			defer l.Close()
			if ws, err := l.Wait(); err != nil || lvl.ExitCode(ws) != 0 {
				errs <- fmt.Errorf("level %d: exit %d, %v", i, lvl.ExitCode(ws), err)
			}
			if err := l.Close(); err != nil { // twice is fine
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := 0; i < n; i++ {
		out := mustRead(t, filepath.Join(dir, fmt.Sprint(i)))
		lines := strings.Split(out, "\n")
		if user {
			if lines[0] != "0" {
				t.Errorf("level %d: id -u says %q, want 0", i, lines[0])
			}
			lines = lines[1:]
		}
		for _, l := range lines[:len(lines)-1] {
			if !ownLine(l) {
				t.Errorf("level %d sees %q", i, l)
			}
		}
		if lines[len(lines)-1] != "0" {
			t.Errorf("level %d sees other levels' cgroups:\n%s", i, out)
		}
	}
}

// Cancelling the context kills the level; Freeze, Thaw
// and typed errors through the API.
func TestAPIContextFreeze(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := lvl.StartContext(ctx, lvl.Config{CgroupParent: testParent, Argv: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Freeze(); err != nil {
		t.Errorf("Freeze: %v", err)
	}
	if err := l.Thaw(); err != nil {
		t.Errorf("Thaw: %v", err)
	}
	if len(l.Cgroups()) != len(hierarchies(t)) {
		t.Errorf("Cgroups() has %d hierarchies", len(l.Cgroups()))
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	ws, _ := l.Wait()
	if lvl.ExitCode(ws) != 137 {
		t.Errorf("after cancel: exit %d, want 137", lvl.ExitCode(ws))
	}
	_, err = lvl.Start(lvl.Config{Name: "bad name", Argv: []string{"true"}})
	var fe *lvl.FieldError
	if !errors.As(err, &fe) || fe.Field != "Config.Name" {
		t.Errorf("bad name: %v, want a *FieldError for Config.Name", err)
	}
}
