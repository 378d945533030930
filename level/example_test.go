package level_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cl-unshare/cl-unshare/level"
)

// Start a command in a level with a memory limit, wait for it, and get
// its exit status in the shell convention. (Needs root.)
func Example() {
	l, err := level.Start(level.Config{
		Argv:   []string{"/bin/sh", "-c", "exit 3"},
		Limits: level.Limits{Memory: 64 << 20},
	})
	var bad *level.FlagError
	if errors.As(err, &bad) {
		fmt.Println("bad config:", bad.Flag, bad.Err)
		return
	} else if err != nil {
		fmt.Println("the kernel refused:", err)
		return
	}
	defer l.Close() // safe to call twice; Wait calls it too
	ws, _ := l.Wait()
	fmt.Println("exit", level.ExitCode(ws))
}

// A harness's level dies with its context.
func ExampleStartContext() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l, err := level.StartContext(ctx, level.Config{Argv: []string{"sleep", "600"}, Stdout: os.Stdout})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("level", l.Name, "pid", l.Pid(), "cgroups", len(l.Cgroups()))
	ws, _ := l.Wait() // killed after a second
	fmt.Println("exit", level.ExitCode(ws))
}
