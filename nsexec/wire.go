package nsexec

// The protocol, one message per SOCK_SEQPACKET packet on fd 3, JSON
// encoded. Every message that crosses:
//
//	launcher                                     init stage
//	starts it (clone, in the level's cgroups) ──▶ waits for its config
//	config size, then chunks ──────────────────▶ the steps of its Mode
//	                         ◀─────────────────── {"type":"set-group"} (ModeUserLevel)
//	joins its run directory and mirror to the
//	  prepared namespace's peer groups
//	{"type":"ok"}, or {"type":"error",...} ────▶
//	                         ◀─────────────────── {"type":"proc"} + a mount fd
//	                                                (ModeUserLevel with MountProc)
//	attaches it at /proc there, then "ok" ─────▶
//	                         ◀─────────────────── {"type":"exec"} just before execve
//	                                                (or, as PID 1, once CMD runs)
//	                         ◀─────────────────── {"type":"error",...} a step failed
//	EOF (the socket is close-on-exec) ◀────────── execve succeeded, or it died
//
// "exec" then EOF means CMD runs; EOF without "exec" means the init stage
// died, and the launcher reports its wait status instead of "EOF".
// ModeInPlace has no socket: its config comes in a memfd, failures go to
// stderr.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// Marker is argv[0] of the re-executed launcher: the dispatch key.
const Marker = "cl-unshare [init]"

// Mode is what the init stage is for; each has a file of its own.
type Mode string

const (
	// ModeLevel makes a new level: cloned with CLONE_NEWNS (level_linux.go).
	ModeLevel Mode = "level"
	// ModeUserLevel makes a new level with a user namespace: cloned with
	// CLONE_NEWUSER, it copies its mount namespace itself from the
	// launcher's prepared one, and asks the launcher for what its less
	// privileged namespaces may not do (level_linux.go).
	ModeUserLevel Mode = "user-level"
	// ModeInPlace is --exec: the launcher exec'd itself as us, same PID,
	// in the level's cgroups already (inplace_linux.go).
	ModeInPlace Mode = "in-place"
	// ModeJoin is `cl-unshare exec NAME`: enter a running level's
	// namespaces (join_linux.go).
	ModeJoin Mode = "join"
)

// File descriptors the init stage inherits.
const (
	SyncFD = 3 // SOCK_SEQPACKET to the launcher (not in ModeInPlace)

	// ModeLevel: detached clones of the host's RUN/levels/NAME and of
	// its mirror (RUN/levels/NAME/cgroup), in their peer groups, which
	// the init stage attaches at RUN and /sys/fs/cgroup (ModeInPlace
	// gets them, and the template, at the numbers in its Config).
	RunDirFD = 4
	MirrorFD = 5

	// ModeJoin: the running level's namespaces.
	JoinCgroupNSFD = 4
	JoinMountNSFD  = 5
	JoinPIDNSFD    = 6 // entered only with Config.JoinPID
	JoinNetNSFD    = 7
	JoinUTSNSFD    = 8
	JoinIPCNSFD    = 9
	JoinTimeNSFD   = 10 // entered only with Config.JoinTime
	JoinUserNSFD   = 11 // entered only with Config.JoinUser
	// JoinUserTopNSFD, with Config.DropGroups: the user namespace below
	// the caller's that JoinUserNSFD's is in (or is), entered first.
	JoinUserTopNSFD = 12
)

// Config is everything the init stage needs, sent as one message.
type Config struct {
	Mode     Mode          `json:"mode"`
	Name     string        `json:"name"`
	RunDir   string        `json:"run_dir"`   // RUN as the launcher sees it
	LevelDir string        `json:"level_dir"` // RUN/levels/NAME, a shared mount
	Layout   mounts.Layout `json:"layout"`    // the host's /sys/fs/cgroup, to rebuild
	Argv     []string      `json:"argv"`
	// JoinPID, in ModeJoin: also enter the level's PID namespace (open as
	// JoinPIDNSFD). That namespace takes only children, so the init stage
	// stays, runs CMD as its child there, passes signals on and exits as
	// CMD did. Dir is the directory to run in, "/" if it does not exist.
	JoinPID bool   `json:"join_pid,omitempty"`
	Dir     string `json:"dir,omitempty"`
	// As, in ModeJoin into a level with a user namespace: the host ids of
	// that level's root, which CMD then runs as, with no capabilities. A
	// Go program cannot enter a user namespace, and CMD left as host root
	// in there would run whatever the level planted in its mounts with
	// the host's privileges.
	As *HostIDs `json:"as,omitempty"`
	// ReadyFD, if > 0, is closed by the final execve (close-on-exec): a
	// waiter sees EOF exactly when the level is set up.
	ReadyFD int `json:"ready_fd,omitempty"`
	// KillSignal is kept as CMD's parent-death signal (--kill-child).
	KillSignal int `json:"kill_signal,omitempty"`
	// MountProc mounts a fresh /proc (with a PID namespace).
	MountProc bool `json:"mount_proc,omitempty"`
	// Init: the init stage stays as PID 1 of the level's PID namespace,
	// runs CMD as its child and reaps every orphan.
	Init bool `json:"init,omitempty"`
	// Unshare, in ModeInPlace, are the namespaces (CLONE_NEWNET, UTS,
	// IPC) the stage makes itself; the other modes are cloned with them.
	// Hostname and Domainname name its UTS namespace; Loopback brings up
	// the new network namespace's lo.
	Unshare    uintptr `json:"unshare,omitempty"`
	Hostname   string  `json:"hostname,omitempty"`
	Domainname string  `json:"domainname,omitempty"`
	Loopback   bool    `json:"loopback,omitempty"`
	// Time makes a time namespace (in every mode: no clone flag can),
	// its clocks offset by Monotonic and Boottime nanoseconds.
	Time      bool  `json:"time,omitempty"`
	Monotonic int64 `json:"monotonic,omitempty"`
	Boottime  int64 `json:"boottime,omitempty"`
	// JoinTime, in ModeJoin: the level's time namespace (JoinTimeNSFD)
	// is not ours, and the stage must hop into it (see hopIntoTime).
	JoinTime bool `json:"join_time,omitempty"`
	// JoinUser, in ModeJoin: the caller is not root, and the stage must
	// hop into the level's user namespace (JoinUserNSFD) before it may
	// enter the others (see hopIntoUser).
	JoinUser bool `json:"join_user,omitempty"`
	// DropGroups, with JoinUser: the level's root is not the caller, and
	// the caller's supplementary groups are not for CMD. The level's
	// namespace denies setgroups, so they are dropped on the way, in the
	// user namespace below the caller's (JoinUserTopNSFD, entered
	// first), whose owner the caller is; TopIsUser: that is the level's.
	DropGroups bool `json:"drop_groups,omitempty"`
	TopIsUser  bool `json:"top_is_user,omitempty"`
	// HoppedUser: the stage is in the level's user namespace by
	// hopIntoUser (set by it, for the stage it starts).
	HoppedUser bool `json:"hopped_user,omitempty"`
	// SetUID and SetGID, if set, are the ids CMD runs as (unshare -S,
	// -G), set after everything else, just before CMD starts; SetGID
	// also drops the supplementary groups where setgroups is allowed.
	SetUID *int `json:"set_uid,omitempty"`
	SetGID *int `json:"set_gid,omitempty"`
	// KeepCaps: CMD, made non-root by SetUID, keeps this stage's
	// capabilities (of the level's user namespace) as ambient ones.
	KeepCaps bool `json:"keep_caps,omitempty"`
	// Propagation is what the level's / becomes once its mount namespace
	// exists: "slave" (also for "" and "unchanged": the template's mounts
	// are slaves already), "shared" or "private".
	Propagation string `json:"propagation,omitempty"`
	// Root, if set, becomes CMD's / by pivot_root once the level is set
	// up, with the level's /sys/fs/cgroup (and /proc with MountProc, and
	// RUN where Root has it) bound into it; WorkDir is where CMD starts
	// (in Root, "/" by default there).
	Root    string `json:"root,omitempty"`
	WorkDir string `json:"work_dir,omitempty"`
	// ProcView: the launcher attaches the level's view of /proc over the
	// kernel's files in the stage's mount namespace, asked once the new
	// root is in place ("proc-view").
	ProcView bool `json:"proc_view,omitempty"`
	// ProcViewFiles, in ModeInPlace (which has no launcher to ask): the
	// stage attaches these clones of the view's files itself.
	ProcViewFiles []ViewFile `json:"proc_view_files,omitempty"`
	// Persist: the launcher keeps some of the stage's namespaces on
	// files, asked once they all exist ("persist").
	Persist bool `json:"persist,omitempty"`
	// Leaf is the cgroup2 leaf below the namespace root to move to once
	// the namespace exists, enabling the root's controllers for children.
	Leaf string `json:"leaf,omitempty"`
	// RunDirFD and MirrorFD are the clones' numbers; TemplateFD, in
	// ModeInPlace, the template's nsfs file, a copy of which becomes the
	// level's mount namespace (a launcher forks the others from it).
	RunDirFD   int `json:"run_dir_fd,omitempty"`
	MirrorFD   int `json:"mirror_fd,omitempty"`
	TemplateFD int `json:"template_fd,omitempty"`
}

// ViewFile is a detached clone of a file of a level's view of /proc,
// open as FD, and the path it covers.
type ViewFile struct {
	FD     int    `json:"fd"`
	Target string `json:"target"`
}

// HostIDs are a user and group id of the host.
type HostIDs struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// InPlaceArg is argv[1] of an in-place init stage; argv[2] is the config
// file's fd number.
const InPlaceArg = "in-place"

// Steps of the init stage, as they appear in messages.
const (
	StepConfig      = "read config"
	StepMountNS     = "unshare mount namespace"
	StepCgroupNS    = "unshare cgroup namespace"
	StepPropagation = "mount propagation"
	StepHide        = "hide host mounts"
	StepMirror      = "cgroup mirror"
	StepRunDir      = "run directory"
	StepCgroupMount = "cgroup mounts"
	StepProc        = "mount /proc"
	StepLeaf        = "cgroup leaf"
	StepRoot        = "new root"
	StepPersist     = "keep namespaces"
	StepProcView    = "proc view"
	StepNamespaces  = "namespaces"
	StepExec        = "exec"
	StepJoin        = "join namespaces"
	StepTerminal    = "terminal guard"
)

// msgType names a message; the protocol table above lists them all.
type msgType string

const (
	msgExec     msgType = "exec"
	msgError    msgType = "error"
	msgSetGroup msgType = "set-group"
	msgProc     msgType = "proc"
	msgPersist  msgType = "persist"
	msgProcView msgType = "proc-view"
	msgOK       msgType = "ok"
)

type message struct {
	Type  msgType `json:"type"`
	Step  string  `json:"step,omitempty"`
	Op    string  `json:"op,omitempty"`
	Path  string  `json:"path,omitempty"`
	Errno int     `json:"errno,omitempty"`
	Text  string  `json:"text,omitempty"`
}

// StepError is a failure of the init stage, rebuilt in the launcher with
// the operation, the path and the errno, so errors.Is(err, unix.ENOENT)
// works there too; Text is the whole message, as the stage said it.
type StepError struct {
	Step  string
	Op    string // the operation that failed ("mount cgroup2", "open"), if known
	Path  string // the path it failed on, if any
	Errno syscall.Errno
	Text  string
}

func (e *StepError) Error() string { return e.Step + ": " + e.Text }

func (e *StepError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Send writes one message.
func send(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// chunk is the largest packet sent: a command line may be as long as
// execve allows (2 MiB and more), far over a socket's send buffer.
const chunk = 32 << 10

// SendConfig releases the init stage: the encoded config's size as one
// message, then the config in packets of at most chunk bytes.
func SendConfig(w io.Writer, c *Config) error {
	b, err := json.Marshal(c)
	if err == nil {
		err = send(w, len(b))
	}
	for len(b) > 0 && err == nil {
		n := min(len(b), chunk)
		_, err = w.Write(b[:n])
		b = b[n:]
	}
	if err != nil {
		return fmt.Errorf("send config to init stage: %w", err)
	}
	return nil
}

func readMessage(r io.Reader, v any) error {
	buf := make([]byte, chunk)
	n, err := r.Read(buf)
	if n == 0 && err == nil {
		return io.EOF
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(buf[:n], v)
}

// ErrDied means the init stage went away without saying why; the caller
// adds its wait status.
var ErrDied = errors.New("init stage exited before exec")

// Wait reads the init stage's reports until EOF. It returns nil once the
// command was exec'd, a *StepError for a reported failure, or ErrDied.
func Wait(r io.Reader) error {
	return wait(func(m *message) (int, error) { return -1, readMessage(r, m) }, nil, Requests{})
}

// Requests are what the init stage of a level with a user namespace asks
// of the launcher mid-way, as its namespaces may not do them itself. Each
// answer goes back on the socket.
type Requests struct {
	// SetGroup puts the level's run directory in the peer group it is
	// mirrored through ("set-group").
	SetGroup func() error
	// AttachProc mounts the level's /proc, a detached mount passed as
	// fd, where the level's mount namespace will be copied from ("proc").
	AttachProc func(fd int) error
	// Persist binds the namespaces the level keeps on files, once the
	// stage has them all and before CMD runs ("persist").
	Persist func() error
	// ProcView attaches the level's view of /proc in the stage's mount
	// namespace ("proc-view"), where a user namespace would lock what
	// the stage mounted itself from a copy.
	ProcView func() error
}

// WaitWith is Wait for a level with a user namespace, answering its
// requests on sock.
func WaitWith(sock *os.File, req Requests) error {
	return wait(func(m *message) (int, error) { return readMessageFD(sock, m) }, sock, req)
}

func wait(read func(*message) (int, error), w io.Writer, req Requests) error {
	execd := false
	for {
		var m message
		fd, err := read(&m)
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
			if execd {
				return nil
			}
			return ErrDied
		}
		if err != nil {
			return fmt.Errorf("read from init stage: %w", err)
		}
		if fd >= 0 && m.Type != msgProc {
			syscall.Close(fd) // only "proc" comes with one
			fd = -1
		}
		var answer func() error
		switch m.Type {
		case msgExec:
			execd = true
		case msgSetGroup:
			answer = req.SetGroup
		case msgPersist:
			answer = req.Persist
		case msgProcView:
			answer = req.ProcView
		case msgProc:
			if req.AttachProc != nil && fd >= 0 {
				answer = func() error { return req.AttachProc(fd) }
			}
		case msgError:
			return &StepError{Step: m.Step, Op: m.Op, Path: m.Path, Errno: syscall.Errno(m.Errno), Text: m.Text}
		default:
			return fmt.Errorf("init stage sent an unknown message %q", m.Type)
		}
		if m.Type == msgExec {
			continue
		}
		if answer == nil {
			if fd >= 0 {
				syscall.Close(fd)
			}
			return fmt.Errorf("init stage asked %q, unasked", m.Type)
		}
		err = answer()
		if fd >= 0 {
			syscall.Close(fd)
		}
		if err != nil {
			reportError(w, requestStep[m.Type], err)
			return newStepError(requestStep[m.Type], err)
		}
		if err := send(w, message{Type: msgOK}); err != nil {
			return err
		}
	}
}

// requestStep names the step a failed request belongs to.
var requestStep = map[msgType]string{msgSetGroup: StepPropagation, msgProc: StepProc, msgPersist: StepPersist, msgProcView: StepProcView}

// readMessageFD is readMessage on a socket, also taking the one file
// descriptor a message may carry (-1 if none).
func readMessageFD(sock *os.File, v any) (int, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return -1, err
	}
	buf, oob := make([]byte, chunk), make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	}); err != nil {
		return -1, err
	}
	if rerr != nil {
		return -1, rerr
	}
	fd := -1
	if oobn > 0 {
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cms) == 1 {
			if fds, err := unix.ParseUnixRights(&cms[0]); err == nil {
				for i, f := range fds {
					if i == 0 {
						fd = f
					} else {
						syscall.Close(f)
					}
				}
			}
		}
	}
	if n == 0 {
		if fd >= 0 {
			syscall.Close(fd)
		}
		return -1, io.EOF
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		if fd >= 0 {
			syscall.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

// sendFD writes one message carrying the file descriptor fd.
func sendFD(sock *os.File, v any, fd int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(s uintptr) bool {
		serr = unix.Sendmsg(int(s), b, unix.UnixRights(fd), nil, 0)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

// ask sends a request and waits for the launcher's answer.
func ask(sock *os.File, m message, fd int) error {
	var err error
	if fd >= 0 {
		err = sendFD(sock, m, fd)
	} else {
		err = send(sock, m)
	}
	if err != nil {
		return err
	}
	var a message
	if err := readMessage(sock, &a); err != nil {
		return fmt.Errorf("wait for the launcher: %w", err)
	}
	if a.Type != msgOK {
		return fmt.Errorf("the launcher could not do %q: %s", m.Type, a.Text)
	}
	return nil
}

// reportError sends a step's failure, keeping the errno.
func reportError(w io.Writer, step string, err error) {
	e := newStepError(step, err)
	_ = send(w, message{Type: msgError, Step: e.Step, Op: e.Op, Path: e.Path, Errno: int(e.Errno), Text: e.Text})
}

func newStepError(step string, err error) *StepError {
	e := &StepError{Step: step, Text: err.Error()}
	errors.As(err, &e.Errno)
	var me *mounts.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &me):
		e.Op, e.Path = me.Op, me.Target
	case errors.As(err, &pe):
		e.Op, e.Path = pe.Op, pe.Path
	}
	return e
}

// StepFailure is err as a failure of step, for the launcher's steps.
func StepFailure(step string, err error) *StepError { return newStepError(step, err) }

func readConfig(r io.Reader) (*Config, error) {
	var size int
	if err := readMessage(r, &size); err != nil {
		return nil, err
	}
	if size <= 0 || size > 64<<20 {
		return nil, fmt.Errorf("config of %d bytes", size)
	}
	b := make([]byte, 0, size)
	for len(b) < size {
		n, err := r.Read(b[len(b):min(size, len(b)+chunk)])
		if n == 0 && err == nil {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, fmt.Errorf("config cut off after %d of %d bytes: %w", len(b), size, err)
		}
		b = b[:len(b)+n]
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if (c.Mode != ModeJoin && (c.LevelDir == "" || c.RunDir == "")) || len(c.Argv) == 0 {
		return nil, errors.New("incomplete config")
	}
	return &c, nil
}
