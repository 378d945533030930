package tests

import (
	"fmt"
	"github.com/moby/sys/mountinfo"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// bin is the cl-unshare binary under test, built once by TestMain.
var bin string

// testParent is the cgroup, relative to this test process's own, under
// which every level of this run is made (created and removed by cl-unshare).
var testParent = fmt.Sprintf("clu-test-%d", os.Getpid())

const runDir = "/run/cl-unshare"

func TestMain(m *testing.M) {
	// The Go API re-executes this binary as a level's init stage (and,
	// with KillSignal, as its watchdog).
	lvl.Init()
	if h := os.Getenv("CLU_HELPER"); h != "" {
		os.Exit(helper(h, os.Args[1:]))
	}
	if b := os.Getenv("CL_UNSHARE_BIN"); b != "" {
		bin = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "cl-unshare-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Chmod(dir, 0o755) // check runs it as nobody too
	bin = filepath.Join(dir, "cl-unshare")
	build := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", bin, "../cmd/cl-unshare")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cl-unshare:", err)
		os.Exit(2)
	}
	code := m.Run()
	// The template goes with the last level.
	if out, err := exec.Command(bin, "gc").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "gc: %v: %s", err, out)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// helper runs inside levels as CMD: the test binary with CLU_HELPER set.
func helper(name string, args []string) int {
	switch name {
	case "hog": // hog MB: allocate and touch MB mebibytes
		mb, _ := strconv.Atoi(args[0])
		b := make([]byte, mb<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		fmt.Println("survived", len(b)>>20)
		return 0
	case "forker": // forker N: start up to N sleeping children, report how many
		n, _ := strconv.Atoi(args[0])
		var kids []*exec.Cmd
		for i := 0; i < n; i++ {
			c := exec.Command("sleep", "30")
			if c.Start() != nil {
				break
			}
			kids = append(kids, c)
		}
		fmt.Printf("forked=%d\n", len(kids))
		for _, c := range kids {
			c.Process.Kill()
			c.Wait()
		}
		return 0
	case "notify": // notify: send READY=1 to $NOTIFY_SOCKET, as a service does
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: os.Getenv("NOTIFY_SOCKET"), Net: "unixgram"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, err = c.Write([]byte("READY=1"))
		c.Close()
		if err != nil {
			return 1
		}
		return 0
	case "links": // links FILE DIR N: hard-link FILE as DIR/rI.json up to N times, print links=COUNT
		n, _ := strconv.Atoi(args[2])
		i := 0
		for ; i < n && os.Link(args[0], filepath.Join(args[1], fmt.Sprintf("r%d.json", i))) == nil; i++ {
		}
		fmt.Printf("links=%d\n", i)
		return 0
	case "ticker": // ticker FILE: write a growing counter to FILE
		for n := 0; ; n++ {
			os.WriteFile(args[0]+".tmp", []byte(strconv.Itoa(n)), 0o644)
			os.Rename(args[0]+".tmp", args[0])
			time.Sleep(5 * time.Millisecond)
		}
	case "intcount": // intcount READYFILE OUTFILE: count SIGINTs for 300 ms after the first
		c := make(chan os.Signal, 16)
		signal.Notify(c, syscall.SIGINT)
		os.WriteFile(args[0], []byte("ready"), 0o644)
		<-c
		n, end := 1, time.After(300*time.Millisecond)
	count:
		for {
			select {
			case <-c:
				n++
			case <-end:
				break count
			}
		}
		os.WriteFile(args[1], []byte(strconv.Itoa(n)), 0o644)
		return 0
	case "netcheck": // netcheck: the interfaces this network namespace has, and whether 127.0.0.1 answers
		var names []string
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			up := "down"
			if i.Flags&net.FlagUp != 0 {
				up = "up"
			}
			names = append(names, i.Name+":"+up)
		}
		fmt.Println("interfaces", strings.Join(names, ","))
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("loopback:", err)
			return 0
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			fmt.Println("loopback:", err)
			return 0
		}
		c.Close()
		fmt.Println("loopback: ok")
		return 0
	case "nestedmount": // nestedmount DIR: mount a tmpfs on DIR in a mount namespace copied from ours, propagation unchanged
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			fmt.Println("unshare:", err)
			return 1
		}
		if err := unix.Mount("nested", args[0], "tmpfs", 0, ""); err != nil {
			fmt.Println("mount:", err)
			return 1
		}
		return 0
	case "readloop": // readloop FILE N [GAP]: the median time of N reads of FILE (open, read all, close), GAP apart, in ns
		n, _ := strconv.Atoi(args[1])
		var gap time.Duration
		if len(args) > 2 {
			gap, _ = time.ParseDuration(args[2])
		}
		ds := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			time.Sleep(gap)
			t0 := time.Now()
			if _, err := os.ReadFile(args[0]); err != nil {
				fmt.Println(err)
				return 1
			}
			ds = append(ds, time.Since(t0))
		}
		fmt.Println(int64(median(ds)))
		return 0
	case "asuser": // asuser CGROUPDIR UID CMD...: move into cgroup2 CGROUPDIR, become UID (gid too, no groups), exec CMD; $CLU_SUBIDS, if set, is bound over /etc/subuid and /etc/subgid in a mount namespace of its own
		if args[0] == "" {
			// No cgroup to move into (a legacy host has no cgroup2).
		} else if err := os.WriteFile(filepath.Join(args[0], "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if f := os.Getenv("CLU_SUBIDS"); f != "" {
			runtime.LockOSThread() // the exec below keeps this thread's namespaces
			err := unix.Unshare(unix.CLONE_NEWNS)
			if err == nil {
				err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
			}
			for _, etc := range []string{"/etc/subuid", "/etc/subgid"} {
				if err == nil {
					err = unix.Mount(f, etc, "", unix.MS_BIND, "")
				}
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "subids:", err)
				return 2
			}
		}
		id, _ := strconv.Atoi(args[1])
		var groups []int // $CLU_GROUPS: supplementary groups to keep
		for _, g := range strings.Fields(os.Getenv("CLU_GROUPS")) {
			n, _ := strconv.Atoi(g)
			groups = append(groups, n)
		}
		if err := syscall.Setgroups(groups); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := syscall.Setresgid(id, id, id); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := syscall.Setresuid(id, id, id); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		env := os.Environ()
		if then := os.Getenv("CLU_THEN"); then != "" {
			env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "CLU_HELPER=") })
			env = append(env, "CLU_HELPER="+then)
		}
		err := syscall.Exec(args[2], args[2:], env)
		fmt.Fprintln(os.Stderr, err)
		return 127
	case "apistart": // apistart RUNDIR: as a user who is not root, the Go API's Start, Wait, Signal, Kill and errors, a line each
		return apiStart(args[0])
	case "numcpu": // numcpu: runtime.NumCPU() and GOMAXPROCS
		fmt.Println(runtime.NumCPU(), runtime.GOMAXPROCS(0))
		return 0
	case "clocks": // clocks: CLOCK_MONOTONIC and CLOCK_BOOTTIME, in whole seconds
		var m, b unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m)
		unix.ClockGettime(unix.CLOCK_BOOTTIME, &b)
		fmt.Println(m.Sec, b.Sec)
		return 0
	case "tiocsti": // tiocsti: push a byte into stdin's terminal, say what happened
		b := byte(' ')
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&b)))
		if errno != 0 {
			fmt.Println("tiocsti:", errno)
		} else {
			fmt.Println("tiocsti: ok")
		}
		return 0
	case "grabtty": // grabtty FILE: leave a child that takes stdin's terminal and records what it reads there
		signal.Ignore(syscall.SIGTTOU, syscall.SIGTTIN, syscall.SIGHUP) // inherited: the child ignores them from its start
		if len(args) == 1 {
			c := exec.Command("/proc/self/exe", "child", args[0])
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, nil, nil
			if err := c.Start(); err != nil {
				return 1
			}
			return 0 // the child stays behind
		}
		time.Sleep(300 * time.Millisecond)
		pgrp := syscall.Getpgrp()
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSPGRP, uintptr(unsafe.Pointer(&pgrp)))
		b := make([]byte, 64)
		deadline := time.Now().Add(3 * time.Second)
		var got []byte
		for time.Now().Before(deadline) {
			fds := []unix.PollFd{{Fd: 0, Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 100); n > 0 {
				n, err := unix.Read(0, b)
				if n <= 0 || err != nil {
					break
				}
				got = append(got, b[:n]...)
			}
		}
		os.WriteFile(args[1], []byte(fmt.Sprintf("tiocspgrp=%v read=%q", errno, got)), 0o644)
		return 0
	case "trap": // trap SIGNUM READYFILE: exit 100+SIGNUM on that signal
		n, _ := strconv.Atoi(args[0])
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.Signal(n))
		os.WriteFile(args[1], []byte("ready"), 0o644)
		s := <-c
		return 100 + int(s.(syscall.Signal))
	}
	fmt.Fprintln(os.Stderr, "unknown helper", name)
	return 2
}

// requires skips (or, in CI, fails) a test whose needs are not met.
func requires(t *testing.T, needs ...string) {
	t.Helper()
	for _, n := range needs {
		var missing string
		switch n {
		case "root":
			if os.Geteuid() != 0 {
				missing = "root (run the tests as root: sudo make test)"
			}
		case "cgroupns":
			if _, err := os.Stat("/proc/self/ns/cgroup"); err != nil {
				missing = "cgroup namespaces (Linux 4.6+ with CONFIG_CGROUPS)"
			}
		case "cgroup2":
			if hierarchy(t, "cgroup2") == nil {
				missing = "a mounted cgroup2 hierarchy"
			}
		case "freezer":
			if hierarchy(t, "freezer") == nil {
				missing = "the v1 freezer hierarchy"
			}
		case "v1":
			if len(hierarchies(t)) < 2 && hierarchy(t, "cgroup2") != nil {
				missing = "cgroup v1 hierarchies (a hybrid or legacy host)"
			}
		case "timens":
			if !hasTimeNS() {
				missing = "time namespaces that execve enters (Linux 6.2+ with CONFIG_TIME_NS)"
			}
		case "2cpus":
			if runtime.NumCPU() < 2 {
				missing = "at least 2 CPUs"
			}
		default:
			t.Fatalf("requires: unknown requirement %q (a test bug)", n)
		}
		if missing != "" {
			if os.Getenv("CL_UNSHARE_NO_SKIP") != "" {
				t.Fatalf("needs %s, and CL_UNSHARE_NO_SKIP forbids skipping", missing)
			}
			t.Skipf("needs %s", missing)
		}
	}
}

// hasTimeNS reports whether a level can have a time namespace here: the
// kernel has them, and execve enters one (Linux 6.2).
func hasTimeNS() bool {
	var u unix.Utsname
	unix.Uname(&u)
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	_, err := os.Stat("/proc/self/ns/time")
	return err == nil && (major > 6 || major == 6 && minor >= 2)
}

func hierarchies(t *testing.T) []cgroup.Hierarchy {
	t.Helper()
	infos, err := mounts.Current()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hs, err := cgroup.Discover(f, infos)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// hierarchy finds a hierarchy by its name ("cgroup2", "memory", "name=systemd").
func hierarchy(t *testing.T, name string) *cgroup.Hierarchy {
	for _, h := range hierarchies(t) {
		if h.Name() == name || (!h.V2() && h.Has(name)) {
			return &h
		}
	}
	return nil
}

// outer is a level's outer cgroup directory in hierarchy h.
func outer(h cgroup.Hierarchy, name string) string {
	return h.Dir(filepath.Join(cgroup.Base(h), testParent, name))
}

// snapshot is what a level may leave behind on the host: mounts under the
// run directory or of cgroup type, the cgroup tree below this process's own
// cgroups, and the run directory's entries.
func snapshot(t *testing.T) []string {
	t.Helper()
	var out []string
	infos, err := mounts.Current()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range infos {
		if templateMount(m) {
			continue // the cache every start shares; gc removes it (TestTemplate)
		}
		if strings.Contains(m.Mountpoint, "cl-unshare") || m.FSType == "cgroup" || m.FSType == "cgroup2" || m.Source == "cl-unshare" {
			out = append(out, "mount "+m.Mountpoint+" "+m.FSType+" "+m.Root)
		}
	}
	for _, h := range hierarchies(t) {
		base := h.Dir(cgroup.Base(h))
		filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != base {
				out = append(out, "cgroup "+p)
			}
			return nil
		})
	}
	for _, sub := range []string{"levels", "state"} {
		ents, _ := os.ReadDir(filepath.Join(runDir, sub))
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".tmp") { // a record being rewritten
				out = append(out, "run "+sub+"/"+e.Name())
			}
		}
	}
	sort.Strings(out)
	return out
}

// templateMount reports whether m is of the template that levels are
// cloned from: its pin (an nsfs bind under RUN/ns), the pin directory's
// own tmpfs, or RUN's bind onto itself.
func templateMount(m *mountinfo.Info) bool {
	return m.FSType == "nsfs" || m.Source == "cl-unshare-ns" ||
		m.Mountpoint == runDir && m.Root != "/" && strings.HasSuffix(runDir, m.Root)
}

// noLeaks checks at the end of the test that the host looks as it did
// at its start.
func noLeaks(t *testing.T) {
	t.Helper()
	before := snapshot(t)
	t.Cleanup(func() {
		after := snapshot(t)
		if d := diff(before, after); d != "" {
			t.Errorf("left behind on the host:\n%s", d)
		}
	})
}

func diff(before, after []string) string {
	had := map[string]bool{}
	for _, s := range before {
		had[s] = true
	}
	var b strings.Builder
	for _, s := range after {
		if !had[s] {
			fmt.Fprintf(&b, "  + %s\n", s)
		}
	}
	now := map[string]bool{}
	for _, s := range after {
		now[s] = true
	}
	for _, s := range before {
		if !now[s] {
			fmt.Fprintf(&b, "  - %s\n", s)
		}
	}
	return b.String()
}

// result is a finished cl-unshare run.
type result struct {
	code   int
	stdout string
	stderr string
}

// clu runs cl-unshare to completion with the test parent cgroup.
func clu(t *testing.T, args ...string) result {
	t.Helper()
	return cluEnv(t, nil, args...)
}

// cluEnv is clu with extra environment.
func cluEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return start(t, env, args...).wait(t)
}

// level is a running cl-unshare.
type level struct {
	name   string
	parent string
	cmd    *exec.Cmd
	stdout output
	stderr output
	done   chan struct{}
}

// output collects a stream in a file rather than a pipe: a level's
// processes may outlive the launcher and would hold a pipe open, and
// exec.Cmd.Wait waits for pipes to close.
type output struct{ f *os.File }

func (o *output) String() string {
	if o.f == nil {
		return ""
	}
	b, _ := os.ReadFile(o.f.Name())
	return string(b)
}

var nameSeq int

// start starts cl-unshare in the background. args may hold --name; if not,
// one is added. Cleanup kills whatever is still running, through the
// level's own cgroup, so even a failed test leaves nothing.
func start(t *testing.T, env []string, args ...string) *level {
	t.Helper()
	l := &level{done: make(chan struct{}), parent: testParent}
	full := []string{"--cgroup-parent", testParent}
	for i, a := range args {
		if a == "--name" && i+1 < len(args) {
			l.name = args[i+1]
		}
		if a == "--cgroup-parent" && i+1 < len(args) {
			l.parent = args[i+1]
		}
		if a == "--" {
			break
		}
	}
	if l.name == "" {
		nameSeq++
		l.name = fmt.Sprintf("t%d-%d", os.Getpid(), nameSeq)
		full = append(full, "--name", l.name)
	}
	l.cmd = exec.Command(bin, append(full, args...)...)
	l.cmd.Env = append(os.Environ(), env...)
	for _, o := range []*output{&l.stdout, &l.stderr} {
		f, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		o.f = f
		t.Cleanup(func() { f.Close() })
	}
	l.cmd.Stdout, l.cmd.Stderr = l.stdout.f, l.stderr.f
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.cmd.Wait(); close(l.done) }()
	t.Cleanup(func() { l.stop(t) })
	return l
}

func (l *level) running() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

// stop kills a level that is still running (a failed test's), first
// through its cgroups so the supervisor cleans up as after a normal exit.
func (l *level) stop(t *testing.T) {
	if !l.running() {
		return
	}
	for _, h := range hierarchies(t) {
		dir := h.Dir(filepath.Join(cgroup.Base(h), l.parent, l.name, cgroup.InnerName))
		if h.V2() {
			cgroup.WriteFile(dir, "cgroup.kill", "1")
		}
		if !h.V2() && h.Has("freezer") {
			cgroup.WriteFile(dir, "freezer.state", "THAWED")
		}
		if pids, err := cgroup.Procs(dir); err == nil {
			for _, p := range pids {
				unix.Kill(p, unix.SIGKILL)
			}
		}
	}
	select {
	case <-l.done:
	case <-time.After(5 * time.Second):
		// Not where we looked: let the supervisor forward a SIGTERM.
		l.cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-l.done:
			return
		case <-time.After(5 * time.Second):
		}
		l.cmd.Process.Kill()
		t.Errorf("level %s did not stop", l.name)
	}
}

func (l *level) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(60 * time.Second):
		l.stop(t)
		t.Fatalf("cl-unshare %s did not exit within 60s; stderr: %s", l.name, l.stderr.String())
	}
	return result{code: l.cmd.ProcessState.ExitCode(), stdout: l.stdout.String(), stderr: l.stderr.String()}
}

// openDir is a temporary directory open to all, with a copy of this test
// binary in it as helper (CLU_HELPER=...): the root of a --user level,
// a host uid of its range, can reach both.
func openDir(t *testing.T) (dir, helper string) {
	t.Helper()
	dir = t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	helper = filepath.Join(dir, "helper")
	if b, err := os.ReadFile("/proc/self/exe"); err != nil || os.WriteFile(helper, b, 0o755) != nil {
		t.Fatalf("copy the helper: %v", err)
	}
	return dir, helper
}

// waitFile waits until path exists and returns its content.
func waitFile(t *testing.T, l *level, path string) string {
	t.Helper()
	return waitFileWithin(t, l, path, 20*time.Second)
}

// waitFileWithin is waitFile for a script known to be slow (thousands of
// forks take longer than 20 s in a VM without KVM).
func waitFileWithin(t *testing.T, l *level, path string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			return string(b)
		}
		if l != nil && !l.running() {
			t.Fatalf("level %s exited before writing %s: %s%s", l.name, path, l.stdout.String(), l.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", path)
	return ""
}

// pidOf waits for the pid file a level's script writes ("echo $$ > F").
func pidOf(t *testing.T, l *level, path string) int {
	t.Helper()
	for {
		s := strings.TrimSpace(waitFile(t, l, path))
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procCgroups reads /proc/PID/cgroup as hierarchy name -> path.
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := cgroup.ParseProcCgroup(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range ms {
		k := "cgroup2"
		if m.ID != 0 {
			k = strings.Join(m.Controllers, ",")
		}
		out[k] = m.Path
	}
	return out
}

// mountLines reads a mount table as "MOUNTPOINT FSTYPE ROOT" lines.
func mountLines(t *testing.T, pid string) []string {
	t.Helper()
	f, err := os.Open("/proc/" + pid + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return mountLinesFrom(t, f)
}

// mountLinesFrom reads mountinfo text as "MOUNTPOINT FSTYPE ROOT" lines.
func mountLinesFrom(t *testing.T, r io.Reader) []string {
	t.Helper()
	infos, err := mounts.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range infos {
		out = append(out, m.Mountpoint+" "+m.FSType+" "+m.Root)
	}
	return out
}

// ownLine reports whether a line of /proc/self/cgroup read inside a level
// shows the level's own cgroup: "/" in v1 hierarchies, the leaf in
// cgroup2 (so that the level's root holds no process).
func ownLine(line string) bool {
	return line == "0::/"+lvl.DefaultLeaf || !strings.HasPrefix(line, "0::") && strings.HasSuffix(line, ":/")
}

// startCgroup is where a level's processes start in hierarchy h below
// its inner cgroup dir: the leaf on cgroup2.
func startCgroup(h cgroup.Hierarchy, inner string) string {
	if h.V2() {
		return filepath.Join(inner, lvl.DefaultLeaf)
	}
	return inner
}

func script(lines ...string) []string {
	return []string{"--", "/bin/sh", "-c", strings.Join(lines, "\n")}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
