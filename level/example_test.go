package level_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cl-unshare/cl-unshare/level"
)

// parent keeps the examples' cgroups under one cgroup of their own, which
// the last level to end removes.
var parent = fmt.Sprintf("clu-example-%d", os.Getpid())

// Start a command in a level with a memory limit, wait for it, and get
// its exit status in the shell convention. (Needs root.)
func Example() {
	l, err := level.Start(level.Config{
		CgroupParent: parent,
		// Inside, /proc/self/cgroup shows / in v1 hierarchies and the
		// leaf /init on cgroup v2: nothing of the host's.
		Argv:   []string{"/bin/sh", "-c", "echo hello, in $(grep -Evc ':/$|^0::/init$' /proc/self/cgroup) cgroups of the host; exit 3"},
		Limits: level.Limits{Memory: 64 << 20},
	})
	var bad *level.FieldError
	if errors.As(err, &bad) {
		fmt.Println("bad config:", bad.Field, bad.Err)
		return
	} else if err != nil {
		fmt.Println("the kernel refused:", err)
		return
	}
	defer l.Close() // safe to call twice; Wait calls it too
	ws, _ := l.Wait()
	fmt.Println("exit", level.ExitCode(ws))
	// Output:
	// hello, in 0 cgroups of the host
	// exit 3
}

// A harness's level dies with its context.
func ExampleStartContext() {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	l, err := level.StartContext(ctx, level.Config{CgroupParent: parent, Argv: []string{"sleep", "600"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	inner := 0
	for _, p := range l.Cgroups() {
		if strings.HasSuffix(p.Inner, "/"+l.Name+"/level") {
			inner++
		}
	}
	fmt.Println("running:", l.Pid() > 0, "in its own cgroup everywhere:", inner == len(l.Cgroups()))
	ws, _ := l.Wait() // killed when the context ends
	fmt.Println("exit", level.ExitCode(ws))
	// Output:
	// running: true in its own cgroup everywhere: true
	// exit 137
}

// Bad input is a *FieldError naming the field, before anything is made.
func ExampleFieldError() {
	_, err := level.Start(level.Config{CgroupParent: parent, Argv: []string{"true"}, MountProc: true})
	var bad *level.FieldError
	if errors.As(err, &bad) {
		fmt.Println(bad)
	}
	// Output:
	// Config.MountProc: needs Config.PID (a /proc of the host's PID namespace would show every process)
}

// With a PID namespace and Init, cl-unshare is PID 1 and reaps orphans;
// CMD sees a fresh /proc with only the level in it.
func ExampleConfig_init() {
	l, err := level.Start(level.Config{
		CgroupParent: parent, PID: true, MountProc: true, Init: true,
		Argv: []string{"/bin/sh", "-c", "cat /proc/1/comm"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ws, _ := l.Wait()
	fmt.Println("exit", level.ExitCode(ws))
	// Output:
	// cl-unshare-init
	// exit 0
}

// Init comes first in main (and in TestMain): a process re-executed as a
// level's init stage or watchdog runs as that and never returns; any
// other returns at once.
func ExampleInit() {
	level.Init()
	fmt.Println("an ordinary start")
	// Output: an ordinary start
}
