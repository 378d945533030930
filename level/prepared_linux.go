package level

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/cl-unshare/cl-unshare/internal/failpoint"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/cl-unshare/cl-unshare/nsexec"
	"golang.org/x/sys/unix"
)

// prepared is the OS thread a level is cloned from (a clone copies the
// namespaces of the thread that calls it): in the template, and for a
// level with a user namespace in a copy of it of its own, made ready by
// prepareMounts. It stays, as the parent that Pdeathsig (and
// --kill-child) watch and to do what must be done in that namespace,
// until release; it ends with its goroutine, and a namespace of its own
// with it.
type prepared struct {
	reqs chan func()
	once sync.Once
	stop chan struct{}
}

// startThread makes the thread and runs setup there.
func startThread(setup func() error) (*prepared, error) {
	p := &prepared{reqs: make(chan func()), stop: make(chan struct{})}
	result := make(chan error, 1)
	offMainThread(func() {
		if err := setup(); err != nil {
			result <- err
			return
		}
		result <- nil
		for {
			select {
			case f := <-p.reqs:
				f()
			case <-p.stop:
				return
			}
		}
	})
	if err := <-result; err != nil {
		return nil, err
	}
	return p, nil
}

// do runs f on the prepared thread, in its mount namespace.
func (p *prepared) do(f func() error) error {
	res := make(chan error, 1)
	select {
	case p.reqs <- func() { res <- f() }:
		return <-res
	case <-p.stop:
		return errors.New("the level's prepared mount namespace is gone")
	}
}

func (p *prepared) release() { p.once.Do(func() { close(p.stop) }) }

// offMainThread runs f in a new goroutine locked to a thread that is not
// the main one, and never unlocked: the thread ends with f. (A goroutine
// that ends locked on the main thread parks it for good instead, and the
// main thread's namespaces are what /proc/PID shows of the process.)
func offMainThread(f func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			f()
			return
		}
		// Holding the main thread, a new goroutine must land elsewhere.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			f()
		}()
		<-locked
		runtime.UnlockOSThread()
	}()
}

// prepareMounts gives the prepared thread, in the template, a mount
// namespace of its own (still owned by the host's user namespace) for a
// level with a user namespace to be cloned from: no host cgroupfs, the
// level's mirror at /sys/fs/cgroup and its run directory at RUN, both
// private (the keeper copies what the level mounts there). A mount
// namespace copied into a new user namespace has every mount locked
// together, so what is removed here can never be brought back from
// inside, while a mount the level itself covered could be unmounted to
// show the host's whole cgroup tree. A failure is a *StepError.
func prepareMounts(c *nsexec.Config, runClone, mirrorClone *os.File) error {
	steps := []struct {
		name string
		do   func() error
	}{
		{nsexec.StepMountNS, func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare(CLONE_NEWNS) for the user namespace's mounts: %w", err)
			}
			return nil
		}},
		{nsexec.StepHide, func() error {
			if rootless {
				// The host's cgroupfs came locked into the launcher's own
				// user namespace: it cannot be taken away, only covered,
				// and the mirror below does; the cover is locked to it in
				// the level's namespace, a less privileged copy of this one.
				return nil
			}
			return mounts.Detach(mounts.CgroupRoot)
		}},
		// The level's /sys/fs/cgroup starts as this copy of its mirror,
		// locked; what it mounts there reaches this one.
		{nsexec.StepMirror, func() error { return mounts.AttachPrivate(mirrorClone, mounts.CgroupRoot) }},
		// The level's bind of it joins a peer group with this copy
		// (mirror.Keeper.Join); the level's own copy, locked under that
		// bind, need not get every mount twice.
		{nsexec.StepRunDir, func() error { return mounts.AttachPrivate(runClone, c.RunDir) }},
	}
	for _, s := range steps {
		err := failpoint.At(s.name)
		if err == nil {
			err = s.do()
		}
		if err != nil {
			return nsexec.StepFailure(s.name, err)
		}
	}
	return nil
}
