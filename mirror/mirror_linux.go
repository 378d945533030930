// Package mirror shows the host the cgroup mounts of a level that has a
// user namespace, and nothing else it mounts, within a bound.
//
// Such a level's run directory and /sys/fs/cgroup are peers of mounts in
// the launcher's own prepared mount namespace, never of the host's: all
// it mounts there arrives in that namespace only. A Keeper
// watches that namespace's mount table and copies to the host, one mount
// at a time, what has the shape of a mirror: cgroup filesystems, and the
// small tmpfs that hold them (the layout's root, nested levels' run
// directories), read-only, without setuid, devices or exec, and private,
// so nothing mounted later reaches the host by itself. Anything else the
// level mounts never shows on the host; a level that puts more than the
// bound of mounts there is stopped.
package mirror

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cl-unshare/cl-unshare/internal/beneath"
	"github.com/cl-unshare/cl-unshare/internal/names"
	"github.com/cl-unshare/cl-unshare/mounts"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// DefaultMax is how many mounts a level may have below its run directory
// in the prepared namespace (its mirror and its nested levels' mirrors):
// a hybrid host's layout is 11, a nested level adds 12.
const DefaultMax = 1024

// MaxTmpfs is the largest tmpfs copied: a run directory and a layout's
// root, as cl-unshare makes them, are 64 KiB.
const MaxTmpfs = 64 << 10

// Config says what a Keeper mirrors.
type Config struct {
	// RunDir is where the level's run directory is mounted in the
	// prepared namespace (RUN), its mirror being at /sys/fs/cgroup there;
	// Host is the host's RUN/levels/NAME, its mirror Host/cgroup.
	RunDir, Host string
	// Max bounds the mounts below RunDir (DefaultMax if 0).
	Max int
	// Do runs f on the prepared namespace's thread.
	Do func(f func() error) error
	// Over is called, once, when there are more than Max mounts.
	Over func(n int)
}

// Keeper keeps the host's copy of one level's mirror.
type Keeper struct {
	c       Config
	run     int // O_PATH of RunDir, opened in the prepared namespace
	cg      int // O_PATH of its /sys/fs/cgroup
	table   int // its mountinfo, opened there
	host    int // O_PATH of Host
	hostCg  int // O_PATH of Host/cgroup
	runID   int // RunDir's mount ID there
	cgID    int // its /sys/fs/cgroup's
	copies  map[int]*copied
	over    bool
	pending bool      // the last Sync left changes for want of budget
	tokens  float64   // copies and unmounts the host may still take now
	filled  time.Time // when tokens were last topped up
	wake    [2]int    // a pipe: Close writes to end the loop's poll
	done    chan struct{}
	stopped sync.Once
}

// copied is a mount copied to the host: what it was (to notice a mount ID
// reused), and the attached copy, open, to unmount it by.
type copied struct {
	desc string
	fd   int
}

// New opens what a Keeper needs; Close releases it.
func New(c Config) (*Keeper, error) {
	if c.Max <= 0 {
		c.Max = DefaultMax
	}
	k := &Keeper{c: c, run: -1, cg: -1, table: -1, host: -1, hostCg: -1, copies: map[int]*copied{}, wake: [2]int{-1, -1},
		done: make(chan struct{})}
	close(k.done) // no loop yet
	if err := unix.Pipe2(k.wake[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("mirror: pipe: %w", err)
	}
	err := c.Do(func() error {
		var err error
		if k.run, err = unix.Open(c.RunDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("open %s: %w", c.RunDir, err)
		}
		if k.runID, err = mountID(k.run); err != nil {
			return err
		}
		if k.cg, err = unix.Open(mounts.CgroupRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("open %s: %w", mounts.CgroupRoot, err)
		}
		if k.cgID, err = mountID(k.cg); err != nil {
			return err
		}
		if k.table, err = unix.Open("/proc/thread-self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("open mountinfo: %w", err)
		}
		return nil
	})
	if err == nil {
		k.host, err = unix.Open(c.Host, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err == nil {
		k.hostCg, err = beneath.Dir(k.host, "cgroup", false)
	}
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("mirror: %w", err)
	}
	return k, nil
}

// Join makes the level's run directory and /sys/fs/cgroup, private
// mounts below root (its root as the launcher reaches it,
// /proc/PID/root), peers of RunDir and /sys/fs/cgroup in the prepared
// namespace, the one place its mounts then reach.
func (k *Keeper) Join(root string) error {
	for _, j := range []struct {
		fd  int
		dir string
	}{{k.run, k.c.RunDir}, {k.cg, mounts.CgroupRoot}} {
		if err := k.c.Do(func() error { return mounts.MakeShared(j.dir) }); err != nil {
			return err
		}
		if err := mounts.JoinGroup(j.fd, root+j.dir); err != nil {
			return err
		}
	}
	return nil
}

// Rate is how many copies and unmounts per second a level's mirror makes
// on the host, after a first burst of Max: a level that mounts and
// unmounts in a loop makes its mirror lag, never the host's mount table
// churn (everything that watches it pays for each change).
const Rate = 100

// spend takes one change from the host's budget, if there is one left.
func (k *Keeper) spend() bool {
	now := time.Now()
	if k.filled.IsZero() {
		k.tokens = float64(k.c.Max)
	} else {
		k.tokens = min(float64(k.c.Max), k.tokens+now.Sub(k.filled).Seconds()*Rate)
	}
	k.filled = now
	if k.tokens < 1 {
		k.pending = true
		return false
	}
	k.tokens--
	return true
}

// Start keeps the mirror in a goroutine of its own until Close: after
// each change of the prepared namespace's mount table, at most every
// interval.
func (k *Keeper) Start(interval time.Duration) {
	k.done = make(chan struct{})
	go func() {
		defer close(k.done)
		for k.pending || k.wait() {
			_ = k.Sync()
			// A change meanwhile stays pending for the next wait.
			if k.closed(int(interval.Milliseconds())) {
				return
			}
		}
	}()
}

// wait blocks until the mount table changed (true) or Close (false).
func (k *Keeper) wait() bool {
	for {
		fds := []unix.PollFd{{Fd: int32(k.table), Events: unix.POLLPRI}, {Fd: int32(k.wake[0]), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 1000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err == nil && n == 0 {
			// A tmpfs grown by a remount changes no mount table here:
			// once a second its copies are looked at again.
			if k.grown() {
				return true
			}
			continue
		}
		return err == nil && fds[1].Revents == 0 && fds[0].Revents != 0
	}
}

// grown reports whether a tmpfs copied to the host is no longer within
// its bounds.
func (k *Keeper) grown() bool {
	for _, c := range k.copies {
		var st unix.Statfs_t
		if unix.Fstatfs(c.fd, &st) == nil && st.Type == unix.TMPFS_MAGIC && smallTmpfs(st) != nil {
			return true
		}
	}
	return false
}

// closed waits up to ms milliseconds for Close and reports whether it came.
func (k *Keeper) closed(ms int) bool {
	fds := []unix.PollFd{{Fd: int32(k.wake[0]), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, ms)
	return n > 0
}

// Close stops the loop and closes the Keeper's files. The copies stay on
// the host until their parent, the level's run directory, is unmounted.
func (k *Keeper) Close() {
	k.stopped.Do(func() {
		if k.wake[1] >= 0 {
			unix.Close(k.wake[1]) // the read end polls readable (EOF)
		}
	})
	<-k.done
	for _, fd := range []int{k.run, k.cg, k.table, k.host, k.hostCg, k.wake[0]} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	k.run, k.cg, k.table, k.host, k.hostCg, k.wake = -1, -1, -1, -1, -1, [2]int{-1, -1}
	for _, c := range k.copies {
		unix.Close(c.fd)
	}
	k.copies = map[int]*copied{}
}

// node is a mount to have on the host: its mount in the prepared
// namespace, and where it goes, below the copy of parent (onHost,
// onHostCg: Host, Host/cgroup).
type node struct {
	m      *mountinfo.Info
	parent int
	rel    string
	kind   int
}

const (
	runDir    = iota // a level's run directory: state, cgroup, levels
	cgroupDir        // a layout's root, or a cgroup filesystem below one
)

// Parents of nodes that go directly below the host's own mounts.
const (
	onHost   = -1
	onHostCg = -2
)

// Sync brings the host's copy up to date with the prepared namespace:
// copies what is new, unmounts what is gone. A mount that cannot be
// copied is left out (and tried again at the next change).
func (k *Keeper) Sync() error {
	infos, err := k.readTable()
	if err != nil {
		return err
	}
	kids := map[int][]*mountinfo.Info{}
	for _, m := range infos {
		kids[m.Parent] = append(kids[m.Parent], m)
	}
	below := count(kids, k.runID) + count(kids, k.cgID)
	if below > k.c.Max && !k.over {
		k.over = true
		k.c.Over(below)
	}
	want := k.plan(kids)
	k.pending = false
	// Unmount what is gone or became something else (a parent's detach
	// takes its children along; theirs then fails, harmlessly), and a
	// tmpfs its level has grown since (a remount of the superblock).
	for _, id := range slices.Sorted(maps.Keys(k.copies)) {
		c := k.copies[id]
		var st unix.Statfs_t
		grew := unix.Fstatfs(c.fd, &st) == nil && st.Type == unix.TMPFS_MAGIC && smallTmpfs(st) != nil
		if grew {
			delete(want, id) // and not copied again while it stays so
		}
		if w, ok := want[id]; ok && describe(w.m) == c.desc && !grew {
			continue
		}
		if !k.spend() {
			break // the rest next time
		}
		_ = unix.Unmount(fmt.Sprintf("/proc/self/fd/%d", c.fd), unix.MNT_DETACH)
		unix.Close(c.fd)
		delete(k.copies, id)
	}
	if k.over {
		return nil // being stopped: nothing more reaches the host
	}
	var errs []error
	for _, n := range order(want) {
		if _, ok := k.copies[n.m.ID]; ok {
			continue
		}
		if _, ok := k.copies[n.parent]; n.parent >= 0 && !ok {
			continue // its parent could not be copied
		}
		if !k.spend() {
			break // the rest next time
		}
		if err := k.copy(n); err != nil {
			errs = append(errs, fmt.Errorf("mirror %s: %w", n.m.Mountpoint, err))
		}
	}
	return errors.Join(errs...)
}

// plan picks the mounts to copy, by where they sit. Below the level's
// /sys/fs/cgroup, cgroup filesystems only. Below a run directory D, a
// tmpfs at D/levels/NAME (a nested level's run directory) and, for a
// nested one, D/cgroup (its mirror: the tmpfs of its layout's root, or
// a cgroup2 on it), below which again cgroup filesystems only.
func (k *Keeper) plan(kids map[int][]*mountinfo.Info) map[int]node {
	want := map[int]node{}
	var walk func(parent *mountinfo.Info, id, kind int)
	walk = func(parent *mountinfo.Info, id, kind int) {
		for _, m := range tops(kids, parent) {
			if _, seen := want[m.ID]; seen {
				continue // a table read while it changed may loop
			}
			rel, ok := relative(parent.Mountpoint, m.Mountpoint)
			if !ok {
				continue
			}
			n := node{m: m, parent: id, rel: rel}
			switch {
			case kind == runDir && id != onHost && rel == "cgroup" && (m.FSType == "tmpfs" || isCgroup(m)):
				n.kind = cgroupDir
			case kind == runDir && m.FSType == "tmpfs" && nestedName(rel):
				n.kind = runDir
			case kind == cgroupDir && isCgroup(m):
				n.kind = cgroupDir
			default:
				continue
			}
			want[m.ID] = n
			walk(m, m.ID, n.kind)
		}
	}
	walk(&mountinfo.Info{ID: k.runID, Mountpoint: k.c.RunDir}, onHost, runDir)
	// The level's own /sys/fs/cgroup is Host/cgroup's counterpart; a
	// cgroup2 on it (a unified layout) goes onto that.
	cg := &mountinfo.Info{ID: k.cgID, Mountpoint: mounts.CgroupRoot}
	if top := stackTop(kids, cg); top != cg && isCgroup(top) {
		want[top.ID] = node{m: top, parent: onHostCg, kind: cgroupDir}
		walk(top, top.ID, cgroupDir)
	} else if top == cg {
		walk(cg, onHostCg, cgroupDir)
	}
	return want
}

// copy clones the mount in the prepared namespace and attaches the clone
// on the host, below the copy of its parent.
func (k *Keeper) copy(n node) error {
	fd, err := k.clone(n)
	if err != nil {
		return err
	}
	if err := restrict(fd); err != nil {
		unix.Close(fd)
		return err
	}
	if err := k.attach(n, fd); err != nil {
		unix.Close(fd)
		return err
	}
	k.copies[n.m.ID] = &copied{desc: describe(n.m), fd: fd}
	return nil
}

// clone clones mount n, in the level's mounts, to a detached tree.
func (k *Keeper) clone(n node) (fd int, err error) {
	err = k.c.Do(func() error {
		// Below the mirror, from whatever is mounted on top of its root
		// (a cgroup2 on unified hosts): opened from /, whose mount
		// points in this namespace are the host's, not the level's.
		base, rel := k.run, ""
		if r, ok := relative(k.c.RunDir, n.m.Mountpoint); ok {
			rel = r
		} else {
			top, err := unix.Open(mounts.CgroupRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(top)
			base, rel = top, "."
			if r, ok := relative(mounts.CgroupRoot, n.m.Mountpoint); ok {
				rel = r
			}
		}
		src, err := beneath.Dir(base, rel, false)
		if err != nil {
			return err
		}
		defer unix.Close(src)
		if id, err := mountID(src); err != nil || id != n.m.ID {
			return fmt.Errorf("%s is no longer mount %d", n.m.Mountpoint, n.m.ID)
		}
		fd, err = unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
		if err != nil {
			return fmt.Errorf("clone: %w", err)
		}
		return nil
	})
	return fd, err
}

// restrict makes a copy private, nosuid, nodev and noexec, and read-only
// if it is a tmpfs (bounded in size); other filesystems are not copied.
func restrict(fd int) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return err
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC, Propagation: unix.MS_PRIVATE}
	switch st.Type {
	case unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC:
	case unix.TMPFS_MAGIC:
		if err := smallTmpfs(st); err != nil {
			return err
		}
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	default:
		return fmt.Errorf("filesystem type %#x is not mirrored", st.Type)
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("set attributes: %w", err)
	}
	return nil
}

// attach mounts the copy fd of n where n is, below its parent's copy.
func (k *Keeper) attach(n node, fd int) error {
	parent := map[int]int{onHost: k.host, onHostCg: k.hostCg}[n.parent]
	if n.parent >= 0 {
		parent = k.copies[n.parent].fd
	}
	// The directory is in a filesystem the level writes: resolved below
	// the parent's copy, on that mount, following nothing.
	to := parent
	if n.rel != "" {
		var err error
		if to, err = beneath.Dir(parent, n.rel, true); err != nil {
			return fmt.Errorf("mount point: %w", err)
		}
		defer unix.Close(to)
	}
	// Attached below a shared mount (as a nested supervisor's is, so its
	// copies reach the host in turn) it is shared in a peer group of its
	// own: none of the level's mounts is in it.
	if err := unix.MoveMount(fd, "", to, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return nil
}

// smallTmpfs checks a tmpfs is bounded as cl-unshare's are: a size (0
// means none) and inodes (nr_inodes=0 reports 0 too) within the bounds.
func smallTmpfs(st unix.Statfs_t) error {
	size := int64(st.Blocks) * st.Bsize
	if size <= 0 || size > MaxTmpfs || st.Files == 0 || st.Files > mounts.TmpfsMaxInodes {
		return fmt.Errorf("a tmpfs of %d bytes and %d inodes, not within %d and %d", size, st.Files, MaxTmpfs, mounts.TmpfsMaxInodes)
	}
	return nil
}

// readTable reads the prepared namespace's mount table, whole.
func (k *Keeper) readTable() ([]*mountinfo.Info, error) {
	var b []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Pread(k.table, buf, int64(len(b)))
		if err != nil {
			return nil, fmt.Errorf("read mountinfo: %w", err)
		}
		if n == 0 {
			break
		}
		b = append(b, buf[:n]...)
	}
	return mounts.Parse(strings.NewReader(string(b)))
}

// tops are the mounts directly on parent, the last (visible) one where
// several are stacked at one place.
func tops(kids map[int][]*mountinfo.Info, parent *mountinfo.Info) []*mountinfo.Info {
	var out []*mountinfo.Info
	for _, m := range kids[parent.ID] {
		if m.ID != parent.ID && m.Mountpoint != parent.Mountpoint {
			out = append(out, stackTop(kids, m))
		}
	}
	return out
}

// stackTop is the last mount stacked on m at its own mount point.
func stackTop(kids map[int][]*mountinfo.Info, m *mountinfo.Info) *mountinfo.Info {
	seen := map[int]bool{m.ID: true}
	for moved := true; moved; {
		moved = false
		for _, s := range kids[m.ID] {
			if s.Mountpoint == m.Mountpoint && !seen[s.ID] {
				seen[s.ID] = true
				m, moved = s, true
				break
			}
		}
	}
	return m
}

// count is the number of mounts below id.
func count(kids map[int][]*mountinfo.Info, id int) int {
	seen := map[int]bool{id: true}
	var below func(id int) int
	below = func(id int) int {
		n := 0
		for _, m := range kids[id] {
			if !seen[m.ID] {
				seen[m.ID] = true
				n += 1 + below(m.ID)
			}
		}
		return n
	}
	return below(id)
}

// order lists nodes parents first.
func order(want map[int]node) []node {
	var out []node
	seen := map[int]bool{}
	var add func(n node)
	add = func(n node) {
		if seen[n.m.ID] {
			return
		}
		if p, ok := want[n.parent]; ok {
			add(p)
		}
		seen[n.m.ID] = true
		out = append(out, n)
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		add(want[id])
	}
	return out
}

func isCgroup(m *mountinfo.Info) bool { return m.FSType == "cgroup" || m.FSType == "cgroup2" }

// nestedName reports whether rel is levels/NAME, a nested level's run
// directory, for a NAME cl-unshare accepts.
func nestedName(rel string) bool {
	n, ok := strings.CutPrefix(rel, "levels/")
	return ok && names.Valid(n) == nil
}

// relative is p strictly below dir, written plainly.
func relative(dir, p string) (string, bool) { return mounts.Below(dir, p) }

func describe(m *mountinfo.Info) string {
	return m.Mountpoint + " " + m.FSType + " " + m.Root + " " + m.Source
}

func mountID(fd int) (int, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st); err != nil {
		return 0, fmt.Errorf("statx: %w", err)
	}
	return int(st.Mnt_id), nil
}
