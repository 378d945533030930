package mounts

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoListmount is IDs on a kernel without listmount (before 6.8).
var ErrNoListmount = errors.New("listmount is not available")

// UniqueID is the unique, never reused id of the mount at path.
func UniqueID(path string) (uint64, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID_UNIQUE, &st); err != nil {
		return 0, &Error{Op: "statx", Target: path, Err: err}
	}
	if st.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return 0, ErrNoListmount
	}
	return st.Mnt_id, nil
}

// listRoot is LSMT_ROOT: the root of the caller's mount namespace.
const listRoot = ^uint64(0)

// IDs lists, ascending, the unique ids of the mounts below the mount
// whose unique id is below (0 for all of this namespace's): a list the
// kernel makes without the text of /proc/self/mountinfo, at a few
// nanoseconds a mount.
func IDs(below uint64) ([]uint64, error) {
	if below == 0 {
		below = listRoot
	}
	req := struct {
		size, spare  uint32
		mntID, param uint64
	}{size: 24, mntID: below}
	var out []uint64
	buf := make([]uint64, 512)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_LISTMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if errno == unix.ENOSYS {
			return nil, ErrNoListmount
		}
		if errno != 0 {
			return nil, &Error{Op: "listmount", Err: errno}
		}
		out = append(out, buf[:n]...)
		if int(n) < len(buf) {
			return out, nil
		}
		req.param = buf[n-1]
		if len(buf) < 1<<16 {
			buf = make([]uint64, 4*len(buf))
		}
	}
}
