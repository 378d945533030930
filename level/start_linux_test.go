package level

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// The thread a --user level is cloned from changes its own filesystem
// view; that must never be the main thread's, which /proc/PID shows.
func TestOffMainThread(t *testing.T) {
	before, _ := os.Readlink("/proc/self/cwd")
	dir := t.TempDir()
	const n = 100
	onMain := make(chan bool, n)
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		offMainThread(func() {
			onMain <- unix.Gettid() == unix.Getpid()
			if unix.Unshare(unix.CLONE_FS) == nil {
				_ = unix.Chdir(dir)
			}
			<-done
		})
	}
	for i := 0; i < n; i++ {
		if <-onMain {
			t.Errorf("f ran on the main thread")
		}
	}
	if now, _ := os.Readlink("/proc/self/cwd"); now != before {
		t.Errorf("the process's cwd went from %s to %s", before, now)
	}
	close(done)
}
