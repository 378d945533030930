package mounts

import (
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Subtree must say what mountinfo says of the same mounts.
func TestSubtreeMatchesMountinfo(t *testing.T) {
	for _, dir := range []string{"/", "/sys", CgroupRoot, "/proc"} {
		got, err := Subtree(dir)
		if errors.Is(err, ErrNoListmount) {
			t.Skipf("kernel without listmount and statmount's mount options (Linux 6.11): %v", err)
		}
		if err != nil {
			t.Fatalf("Subtree(%s): %v", dir, err)
		}
		all, err := Current()
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		byID := map[int]int{}
		for i, m := range all {
			if Under(m.Mountpoint, dir) {
				want++
				byID[m.ID] = i
			}
		}
		if len(got) != want {
			t.Errorf("Subtree(%s): %d mounts, mountinfo has %d", dir, len(got), want)
		}
		for _, m := range got {
			i, ok := byID[m.ID]
			if !ok {
				t.Errorf("Subtree(%s): mount %d at %s is not in mountinfo", dir, m.ID, m.Mountpoint)
				continue
			}
			w := all[i]
			if m.Parent != w.Parent || m.Major != w.Major || m.Minor != w.Minor || m.Root != w.Root ||
				m.Mountpoint != w.Mountpoint || m.FSType != w.FSType || m.VFSOptions != w.VFSOptions || m.Optional != w.Optional {
				t.Errorf("Subtree(%s): got\n%+v\nmountinfo has\n%+v", dir, *m, *w)
			}
		}
	}
}

// CgroupMounts must find what mountinfo shows at /sys/fs/cgroup and its
// entries, the same way.
func TestCgroupMountsMatchMountinfo(t *testing.T) {
	got, err := CgroupMounts()
	if errors.Is(err, ErrNoListmount) {
		t.Skipf("kernel without statmount's mount options (Linux 6.11): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	all, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, m := range all { // the last mounted at a path is the one seen
		if m.Mountpoint == CgroupRoot || path.Dir(m.Mountpoint) == CgroupRoot {
			want[m.Mountpoint] = m.FSType + " " + m.Root + " " + m.VFSOptions
		}
	}
	have := map[string]string{}
	for _, m := range got {
		have[m.Mountpoint] = m.FSType + " " + m.Root + " " + m.VFSOptions
	}
	if fmt.Sprint(have) != fmt.Sprint(want) {
		t.Errorf("CgroupMounts:\n%v\nmountinfo:\n%v", have, want)
	}
}

// A mount stacked over another at the same place is below neither's
// own listing: Subtree must still give both, as mountinfo does.
func TestSubtreeStacked(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	// A thread of its own in a mount namespace of its own: the test's
	// mounts go with the thread.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		t.Skipf("unshare: %v", err)
	}
	_ = unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, "")
	for _, src := range []string{"under", "over"} {
		if err := unix.Mount(src, dir, "tmpfs", 0, "size=4k"); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { // both
		unix.Unmount(dir, unix.MNT_DETACH)
		unix.Unmount(dir, unix.MNT_DETACH)
	}()
	got, err := Subtree(dir)
	if errors.Is(err, ErrNoListmount) {
		t.Skipf("kernel without statmount's mount options (Linux 6.11): %v", err)
	}
	if err != nil || len(got) != 2 {
		t.Errorf("Subtree(%s) = %d mounts, %v; want the 2 stacked there", dir, len(got), err)
	}
}
