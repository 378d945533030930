package mounts

import (
	"errors"
	"fmt"
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

// Exists reports whether the mount with unique id id is in the caller's
// mount namespace.
func Exists(id uint64) (bool, error) {
	req := struct {
		size, spare  uint32
		mntID, param uint64
	}{size: 24, mntID: id, param: smMntBasic}
	buf := make([]byte, 1024)
	_, _, errno := unix.Syscall6(unix.SYS_STATMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
	switch errno {
	case 0:
		return true, nil
	case unix.ENOENT:
		return false, nil
	case unix.ENOSYS:
		return false, ErrNoListmount
	}
	return false, &Error{Op: "statmount", Target: fmt.Sprint(id), Err: errno}
}

// nsMntGetInfo is NS_MNT_GET_INFO, _IOR(0xb7, 10, struct mnt_ns_info).
const nsMntGetInfo = 0x8010b70a

// Count is the number of mounts in the caller's mount namespace, counted
// by the kernel (Linux 6.12), or listed (6.8): ErrNoListmount before.
func Count() (int, error) {
	if fd, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		info := struct {
			size, nrMounts uint32
			id             uint64
		}{size: 16}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsMntGetInfo, uintptr(unsafe.Pointer(&info)))
		unix.Close(fd)
		if errno == 0 {
			return int(info.nrMounts), nil
		}
	}
	ids, err := IDs(0)
	return len(ids), err
}
