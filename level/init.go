package level

import (
	"os"

	"github.com/cl-unshare/cl-unshare/nsexec"
)

// Init runs this process in the role it was re-executed in, if it was
// one, and then never returns: a level's init stage (the code that runs
// inside the new namespaces, package nsexec), the launcher in a user
// namespace that Start runs for a caller who is not root, or the --kill-child
// watchdog, or the server of its view of /proc. Otherwise it returns at once. Levels are started by
// re-executing /proc/self/exe, so a program that uses this package must
// call Init first in main, and in TestMain (see the package example).
func Init() {
	switch {
	case isAPILauncher():
		os.Exit(apiLauncherMain())
	case isGCInRange():
		os.Exit(gcInRangeMain())
	case nsexec.IsInit():
		nsexec.Main()
	case isWatch():
		os.Exit(watchMain(os.Args[1:]))
	case isProcView():
		os.Exit(procViewMain(os.Args[1:]))
	case isProcViewServer():
		os.Exit(procViewServerMain(os.Args[1:]))
	}
}
