package mounts

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// What statmount(2) is asked for, and the layout of its answer (Linux
// 6.8's struct statmount; later kernels fill more of the same 512 bytes).
const (
	smSBBasic   = 0x1
	smMntBasic  = 0x2
	smMntRoot   = 0x8
	smMntPoint  = 0x10
	smFSType    = 0x20
	smMntNSID   = 0x40 // Linux 6.11, as is smMntOpts: its presence says
	smMntOpts   = 0x80 // that a missing smMntOpts means no options
	smWant      = smSBBasic | smMntBasic | smMntRoot | smMntPoint | smFSType | smMntNSID | smMntOpts
	smMust      = smWant &^ smMntOpts
	smFixedSize = 512
)

type statmount struct {
	Size, MntOpts         uint32
	Mask                  uint64
	Major, Minor          uint32
	Magic                 uint64
	SBFlags, FSType       uint32
	MntID, ParentID       uint64
	MntIDOld, ParentIDOld uint32
	Attr, Propagation     uint64
	PeerGroup, Master     uint64
	PropagateFrom         uint64
	MntRoot, MntPoint     uint32
}

// Subtree returns the mounts at and below dir, as /proc/self/mountinfo
// would show them, without reading that file: its length grows with
// every mount of the namespace (every level's mirror is one of the
// host's), this with the mounts asked about. It fails with
// ErrNoListmount where the kernel cannot tell a mount's options
// (before Linux 6.11); the caller reads mountinfo then.
func Subtree(dir string) ([]*mountinfo.Info, error) {
	// From the mount dir lies on, not the one at dir: that may be stacked
	// on others at the same place (a cgroup2 over a mirror's tmpfs), which
	// are not below it.
	top, err := UniqueID(filepath.Dir(dir))
	if err != nil {
		return nil, err
	}
	ids, err := IDs(top)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	var out []*mountinfo.Info
	for _, id := range append([]uint64{top}, ids...) {
		m, err := statMount(id, &buf)
		if errors.Is(err, unix.ENOENT) {
			continue // unmounted since the listing
		}
		if err != nil {
			return nil, err
		}
		if Under(m.Mountpoint, dir) {
			out = append(out, m)
		}
	}
	return out, nil
}

func statMount(id uint64, buf *[]byte) (*mountinfo.Info, error) {
	req := struct {
		size, spare  uint32
		mntID, param uint64
	}{size: 24, mntID: id, param: smWant}
	for {
		b := *buf
		_, _, errno := unix.Syscall6(unix.SYS_STATMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		switch errno {
		case 0:
			return decodeStatmount(b)
		case unix.EOVERFLOW:
			*buf = make([]byte, 2*len(b))
			continue
		case unix.ENOSYS:
			return nil, ErrNoListmount
		default:
			return nil, &Error{Op: "statmount", Target: fmt.Sprint(id), Err: errno}
		}
	}
}

func decodeStatmount(b []byte) (*mountinfo.Info, error) {
	sm := (*statmount)(unsafe.Pointer(&b[0]))
	if sm.Mask&smMust != smMust || int(sm.Size) > len(b) || sm.Size < smFixedSize {
		return nil, ErrNoListmount // an older kernel: no mount options
	}
	strs := b[smFixedSize:sm.Size]
	str := func(off uint32) string {
		if int(off) >= len(strs) {
			return ""
		}
		s := strs[off:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s)
	}
	super := "rw"
	if sm.SBFlags&unix.MS_RDONLY != 0 {
		super = "ro"
	}
	if o := str(sm.MntOpts); sm.Mask&smMntOpts != 0 && o != "" {
		super += "," + o
	}
	m := &mountinfo.Info{
		ID: int(sm.MntIDOld), Parent: int(sm.ParentIDOld),
		Major: int(sm.Major), Minor: int(sm.Minor),
		Root: str(sm.MntRoot), Mountpoint: str(sm.MntPoint),
		FSType: str(sm.FSType), VFSOptions: super, Options: attrOptions(sm.Attr),
	}
	var opt []string
	if sm.Propagation&unix.MS_SHARED != 0 {
		opt = append(opt, fmt.Sprintf("shared:%d", sm.PeerGroup))
	}
	if sm.Propagation&unix.MS_SLAVE != 0 {
		opt = append(opt, fmt.Sprintf("master:%d", sm.Master))
	}
	m.Optional = strings.Join(opt, " ")
	return m, nil
}

// attrOptions spells MOUNT_ATTR_* flags as mountinfo's per-mount options.
func attrOptions(a uint64) string {
	o := []string{"rw"}
	if a&unix.MOUNT_ATTR_RDONLY != 0 {
		o[0] = "ro"
	}
	for _, f := range []struct {
		bit  uint64
		name string
	}{{unix.MOUNT_ATTR_NOSUID, "nosuid"}, {unix.MOUNT_ATTR_NODEV, "nodev"}, {unix.MOUNT_ATTR_NOEXEC, "noexec"}} {
		if a&f.bit != 0 {
			o = append(o, f.name)
		}
	}
	return strings.Join(o, ",")
}

// CgroupMounts returns the mounts that make the caller's cgroup layout:
// the one at /sys/fs/cgroup and, where that is a tmpfs (hybrid, legacy),
// the ones at its entries, as mountinfo would show them. It looks up
// each by path, so its cost does not grow with the namespace's other
// mounts, as a listmount's does (the kernel walks them all). It fails
// with ErrNoListmount before Linux 6.11.
func CgroupMounts() ([]*mountinfo.Info, error) {
	buf := make([]byte, 4096)
	top, err := mountAt(CgroupRoot, &buf)
	if err != nil {
		return nil, err
	}
	out := []*mountinfo.Info{top}
	if top.FSType != "tmpfs" {
		return out, nil // cgroup2 (or one v1 hierarchy) at the root itself
	}
	ents, err := os.ReadDir(CgroupRoot)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue // a symlink such as cpu -> cpu,cpuacct
		}
		m, err := mountAt(filepath.Join(CgroupRoot, e.Name()), &buf)
		if errors.Is(err, errNotMountPoint) || errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

var errNotMountPoint = errors.New("not a mount point")

// mountAt describes the mount at path, which must be a mount point.
func mountAt(path string, buf *[]byte) (*mountinfo.Info, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID_UNIQUE, &st); err != nil {
		return nil, &Error{Op: "statx", Target: path, Err: err}
	}
	if st.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return nil, ErrNoListmount
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 || st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return nil, errNotMountPoint
	}
	return statMount(st.Mnt_id, buf)
}
