package procview

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Files are the view's files: the name each has in the FUSE file system
// and the path inside the level it is bound over.
var Files = []struct {
	Name, Target string
	need         int // the parts of a View it is rendered from
}{
	{"cpuinfo", "/proc/cpuinfo", NeedCPUs},
	{"stat", "/proc/stat", NeedCPUs | NeedCPUTime},
	{"meminfo", "/proc/meminfo", NeedMemory},
	{"swaps", "/proc/swaps", NeedMemory},
	{"uptime", "/proc/uptime", NeedCPUs | NeedCPUTime},
	{"loadavg", "/proc/loadavg", NeedTasks},
	{"online", "/sys/devices/system/cpu/online", NeedCPUs},
}

// FSType is the view's file system type in mountinfo.
const FSType = "fuse.clu-procview"

// render makes file name for view v, from the host's file where it needs
// one.
func render(name string, v *View) string {
	host := func(p string) string { return readAll(p) }
	switch name {
	case "cpuinfo":
		return CPUInfo(host("/proc/cpuinfo"), v)
	case "stat":
		return Stat(host("/proc/stat"), v)
	case "meminfo":
		return Meminfo(host("/proc/meminfo"), v)
	case "swaps":
		return Swaps(v)
	case "uptime":
		return Uptime(v)
	case "loadavg":
		return Loadavg(host("/proc/loadavg"), v)
	case "online":
		return Online(v)
	}
	return ""
}

type root struct {
	fs.Inode
	src *Source
}

var _ fs.NodeOnAdder = (*root)(nil)

func (r *root) OnAdd(ctx context.Context) {
	for _, f := range Files {
		ch := r.NewPersistentInode(ctx, &file{name: f.Name, need: f.need, src: r.src}, fs.StableAttr{Mode: syscall.S_IFREG})
		r.AddChild(f.Name, ch, false)
	}
}

func (r *root) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	return 0
}

// file is one file of the view, rendered for whoever opens it: the
// kernel tells the server the opener's PID.
type file struct {
	fs.Inode
	name string
	need int
	src  *Source

	mu   sync.Mutex
	last map[uint32]rendered // by reader PID: what it was last given
}

// rendered is a file's content as rendered for a reader, and when.
type rendered struct {
	data []byte
	at   time.Time
}

// fresh is how long a reader's rendering serves its next request: an
// open and the fstat that sizes the read (before or after) must agree, or
// sendfile, which reads up to the size, would cut the text short. It also
// spares the second rendering.
const fresh = 100 * time.Millisecond

// content is the file as the caller sees it: rendered again unless it was
// rendered for the same process within fresh.
func (f *file) content(pid uint32) ([]byte, error) {
	f.mu.Lock()
	r, ok := f.last[pid]
	f.mu.Unlock()
	if ok && time.Since(r.at) < fresh {
		return r.data, nil
	}
	v, err := f.src.ViewOf(int(pid), f.need)
	if err != nil {
		return nil, err
	}
	r = rendered{data: []byte(render(f.name, v)), at: time.Now()}
	f.mu.Lock()
	if f.last == nil || len(f.last) > 1024 {
		f.last = map[uint32]rendered{} // readers come and go: start afresh
	}
	f.last[pid] = r
	f.mu.Unlock()
	return r.data, nil
}

var (
	_ fs.NodeOpener    = (*file)(nil)
	_ fs.NodeGetattrer = (*file)(nil)
)

// Getattr gives the size of the file as the caller would read it now, as
// lxcfs gives the host's: splice and sendfile (busybox cat) read a FUSE
// file through the page cache, up to its size, even with direct I/O.
func (f *file) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	if h, ok := fh.(*handle); ok {
		out.Size = uint64(len(h.data))
		return 0
	}
	if caller, ok := fuse.FromContext(ctx); ok {
		if data, err := f.content(caller.Pid); err == nil {
			out.Size = uint64(len(data))
		}
	}
	return 0
}

func (f *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EACCES
	}
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return nil, 0, syscall.EIO
	}
	data, err := f.content(caller.Pid)
	if err != nil {
		return nil, 0, syscall.ESRCH // the opener is gone
	}
	// Direct I/O: no page cache between readers; each sees its own view.
	return &handle{data: data}, fuse.FOPEN_DIRECT_IO, 0
}

type handle struct{ data []byte }

var (
	_ fs.FileReader  = (*handle)(nil)
	_ fs.FileFlusher = (*handle)(nil)
)

// Flush is not needed (nothing is written): ENOSYS tells the kernel to
// send no more FLUSH, one round trip less on every close.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return syscall.ENOSYS }

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(h.data)))
	return fuse.ReadResultData(h.data[off:end]), 0
}

// Serve mounts the view at dir and serves it until the returned server
// is unmounted; it samples the level's load every 5 s meanwhile.
func Serve(dir string, src *Source) (*fuse.Server, error) {
	// The names never change: the kernel may keep them, and spare a
	// lookup on every open. The sizes are the reader's: never kept.
	ttl, noTTL := time.Hour, time.Duration(0)
	srv, err := fs.Mount(dir, &root{src: src}, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName: "cl-unshare", Name: "clu-procview", AllowOther: true, DirectMount: true, DirectMountStrict: true,
			DisableXAttrs: true, MaxBackground: 64,
			// noatime: a read would otherwise invalidate the atime, and the
			// next fstat cost a GETATTR round trip.
			DirectMountFlags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_RDONLY,
		},
		EntryTimeout: &ttl, AttrTimeout: &noTTL,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for range t.C {
			src.Sample()
		}
	}()
	return srv, nil
}
