// Package level starts and supervises levels: a command in its own
// cgroups (every hierarchy), cgroup namespace and mount namespace, with a
// fresh /sys/fs/cgroup mirrored to the host under RUN/levels/NAME/cgroup.
//
// A level is started by re-executing the running binary (/proc/self/exe)
// as its init stage, which makes the namespaces and execs the command, so
// a program that uses this package calls Init first in main:
//
//	func main() {
//		level.Init() // returns only if this process is not a level's stage
//		l, err := level.Start(level.Config{Argv: []string{"make", "test"}})
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(level.ErrorCode(err))
//		}
//		ws, _ := l.Wait()
//		os.Exit(level.ExitCode(ws))
//	}
//
// and in TestMain, before m.Run, where tests start levels.
package level
