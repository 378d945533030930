// Package beneath opens files below a directory that somebody else
// controls (a level's run directory, as the host sees it) without being
// led out of it: no symlink, no "..", no magic link is followed, and what
// is read must be a small regular file, so a planted FIFO, device or
// bind-mounted host file can neither hang nor fool the reader.
package beneath

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// strict is how every path below the directory is resolved.
const strict = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Open opens rel below the directory open as dirfd. With sameMount, the
// walk may not cross into another mount either.
func Open(dirfd int, rel string, flags int, sameMount bool) (int, error) {
	flags |= unix.O_CLOEXEC
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NOCTTY // openat2 refuses it with O_PATH
	}
	how := unix.OpenHow{Flags: uint64(flags), Resolve: strict}
	if sameMount {
		how.Resolve |= unix.RESOLVE_NO_XDEV
	}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // a rename raced the walk (EAGAIN with RESOLVE_BENEATH)
		}
		return fd, err
	}
}

// Dir opens directory rel below dirfd as an O_PATH descriptor.
func Dir(dirfd int, rel string, sameMount bool) (int, error) {
	return Open(dirfd, rel, unix.O_PATH|unix.O_DIRECTORY, sameMount)
}

// ErrNotRegular says a file is not a regular file, or not on the
// filesystem it should be on.
var ErrNotRegular = errors.New("not a regular file on the expected filesystem")

// ReadFile reads the regular file name, directly in the directory open as
// dirfd and on the same mount, if it is at most max bytes and on a
// filesystem of type magic (0: any).
func ReadFile(dirfd int, name string, max int64, magic int64) ([]byte, error) {
	fd, err := Open(dirfd, name, unix.O_RDONLY|unix.O_NONBLOCK, true)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, ErrNotRegular
	}
	if magic != 0 {
		var fs unix.Statfs_t
		if err := unix.Fstatfs(fd, &fs); err != nil {
			return nil, err
		}
		if int64(fs.Type) != magic {
			return nil, ErrNotRegular
		}
	}
	if st.Size > max {
		return nil, fmt.Errorf("%d bytes, more than %d", st.Size, max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("more than %d bytes", max)
	}
	return b, nil
}

// Names lists up to max entries of directory rel below dirfd.
func Names(dirfd int, rel string, max int) ([]string, error) {
	fd, err := Open(dirfd, rel, unix.O_RDONLY|unix.O_DIRECTORY, false)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	names, err := f.Readdirnames(max)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return names, err
}
