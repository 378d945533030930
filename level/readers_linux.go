package level

import (
	"sync"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"golang.org/x/sys/unix"
)

// An events reader learns how CMD ended from the level's record, which
// the supervisor removes a few milliseconds after writing it. A reader
// that the scheduler runs late (a loaded host, a TCG guest) would find
// the record gone and could only say that the level ended. So a reader
// holds a shared flock on one of the level's outer cgroup directories
// (a node that lives exactly as long as the level and that every mount
// of the hierarchy shares; readerLock picks the same one in both, since
// the supervisor and a record list the hierarchies in different orders)
// until it has read the end, and the supervisor,
// having written it, takes the lock exclusively before it tears down,
// waiting at most readersGrace for a reader that is stopped or stuck.
const readersGrace = 2 * time.Second

// readerLock is the directory the lock is on: the outer cgroup of the
// hierarchy whose name sorts first ("" for a level without cgroups).
func readerLock(cg *cgroup.Level) string {
	dir, name := "", ""
	for _, d := range cg.Dirs {
		if dir == "" || d.Name() < name {
			dir, name = d.Outer, d.Name()
		}
	}
	return dir
}

// holdAsReader takes the shared lock on dir; release undoes it, once
// however often it is called. A level already ending (its supervisor
// holds the lock) gives a no-op release.
func holdAsReader(dir string) (release func()) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return func() {}
	}
	if unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB) != nil {
		unix.Close(fd)
		return func() {}
	}
	var once sync.Once
	return func() { once.Do(func() { unix.Close(fd) }) }
}

// waitForReaders waits until no reader holds dir's lock, or grace passes.
func waitForReaders(dir string, grace time.Duration) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(grace)
	for unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}
