package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// cmdTimeout runs a cl-unshare subcommand, killed after d: a command that
// a level can make loop must still come back.
func cmdTimeout(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	var out, errb strings.Builder
	c.Stdout, c.Stderr = &out, &errb
	c.Run()
	if ctx.Err() != nil {
		t.Errorf("cl-unshare %v did not finish within %v", args, d)
	}
	return result{code: c.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// testHierarchy is the hierarchy forged records name: cgroup2 where there
// is one, else the first v1 hierarchy. It returns its name and where a
// level sees it mounted (the host's layout, rebuilt inside).
func testHierarchy(t *testing.T) (cgroup.Hierarchy, string) {
	h := hierarchies(t)[0]
	if v2 := hierarchy(t, "cgroup2"); v2 != nil {
		h = *v2
	}
	return h, h.Mount
}

// A --user level writes records of "nested levels" in
// its own state directory, and the host must not act on them outside the
// level, nor run anything as more than the level's root, nor loop.
func TestForgedNestedState(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // the level's root is host uid 100000
	os.Chmod(filepath.Dir(dir), 0o755)
	victim := start(t, nil, script("echo $$ > "+dir+"/victim", "sleep 600")...)
	vpid := pidOf(t, victim, dir+"/victim")
	h, m := testHierarchy(t)
	vouter := outer(h, victim.name)
	hn := h.Name()
	// rec NAME SUPPID SUPSTART CMDPID CMDSTART LEVELDIR OUTER INNER [FILE]
	rec := `rec() { printf '{"name":"%s","supervisor":{"pid":%s,"start_time":%s},"cmd":{"pid":%s,"start_time":%s},` +
		`"argv":["forged"],"level_dir":"%s","outer_cgroups":%s,"inner_cgroups":%s,"limits":{}}' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" > "${9:-/run/cl-unshare/state/$1.json}"; }`
	cg := func(p string) string { return fmt.Sprintf(`{"%s":"%s"}`, hn, p) }
	// A chain of tmpfs run directories, each with a record of the next:
	// deeper than the host follows.
	chain := fmt.Sprintf(`d=/run/cl-unshare; i=0; while [ $i -lt %d ]; do
		mkdir -p $d/state $d/levels/a && rec a $$ $ms 0 0 /run/cl-unshare/levels/a '{}' '{}' $d/state/a.json &&
		mount -t tmpfs -o size=64k,nr_inodes=1024 chain $d/levels/a && d=$d/levels/a && i=$((i+1)) || { echo chain failed at $i; exit 1; }
		done`, lvl.MaxDepth+8)
	l := start(t, nil, append([]string{"--user"}, script(
		rec,
		"echo $$ > "+dir+"/started",
		"while [ ! -e "+dir+"/helper ]; do sleep 0.01; done",
		"h=$(cat "+dir+"/helper); hs=$(cut -d' ' -f22 /proc/$h/stat); ms=$(cut -d' ' -f22 /proc/$$/stat)",
		"mkdir -p /run/cl-unshare/state",
		// 1: the host's exec joins the helper, in the host's user namespace.
		"rec worker $$ $ms $h $hs /run/cl-unshare/levels/worker '"+cg(m)+"' '"+cg(m+"/level")+"'",
		"mkdir -p "+m+"/w2/level && echo $h > "+m+"/w2/level/cgroup.procs || echo move failed",
		"rec worker2 $$ $ms $h $hs /run/cl-unshare/levels/worker2 '"+cg(m+"/w2")+"' '"+cg(m+"/w2/level")+"'",
		// 2: another level's cgroups, named past the prefix check.
		"rec sib $$ $ms $h $hs /run/cl-unshare/levels/sib '"+cg("/"+vouter)+"' '"+cg("/"+vouter+"/level")+"'",
		"rec dots $$ $ms $h $hs /run/cl-unshare/levels/dots '"+cg(m+"/../../..")+"' '"+cg(m+"/../../../level")+"'",
		// 3: a run directory that is the level's own RUN, and a link out.
		"rec loop $$ $ms 0 0 /run/cl-unshare '{}' '{}'",
		"rec link $$ $ms 0 0 /run/cl-unshare/levels/link '{}' '{}' && ln -s /run/cl-unshare /run/cl-unshare/levels/link",
		chain,
		"echo $$ > "+dir+"/forged",
		"sleep 600")...)...)
	pidOf(t, l, dir+"/started")
	// A routine exec leaves a helper behind, as the level's root on the
	// host but in the host's user namespace.
	if r := cmd(t, "exec", l.name, "--", "/bin/sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $! > "+dir+"/helper"); r.code != 0 {
		t.Fatalf("exec: exit %d: %s", r.code, r.stderr)
	}
	helper := pidOf(t, nil, dir+"/helper")
	pidOf(t, l, dir+"/forged")

	r := cmdTimeout(t, 30*time.Second, "list", "--json")
	var ls []lvl.Info
	if err := json.Unmarshal([]byte(r.stdout), &ls); r.code != 0 || err != nil {
		t.Fatalf("list --json: exit %d, %v: %.500s %s", r.code, err, r.stdout, r.stderr)
	}
	top := findInfo(ls, l.name)
	if top == nil {
		t.Fatalf("list does not show %s", l.name)
	}
	for _, c := range []struct{ name, why string }{
		{"worker", "not below"}, {"sib", "clean"}, {"dots", "clean"}, {"loop", "run directory"},
	} {
		i := findInfo(top.Levels, c.name)
		if i == nil || i.State != lvl.Invalid || !strings.Contains(i.Invalid, c.why) || i.CmdPID != 0 || len(i.Cgroups) != 0 {
			t.Errorf("forged level %s: %+v, want invalid (%s)", c.name, i, c.why)
		}
	}
	if i := findInfo(top.Levels, "worker2"); i == nil || i.State != lvl.Running || i.CmdPID != helper {
		t.Errorf("worker2 (the helper, moved into a cgroup of the level's): %+v", i)
	}
	depth := 0
	for i := findInfo(top.Levels, "a"); i != nil; i = findInfo(i.Levels, "a") {
		depth++
		if i.State == lvl.Invalid {
			if !strings.Contains(i.Invalid, "levels deep") {
				t.Errorf("depth %d: invalid for %q", depth, i.Invalid)
			}
			break
		}
	}
	if depth != lvl.MaxDepth+1 {
		t.Errorf("list shows the chain %d levels deep, want %d (the last one invalid)", depth, lvl.MaxDepth+1)
	}
	if r := cmdTimeout(t, 30*time.Second, "list"); r.code != 0 || !strings.Contains(r.stdout, "invalid") {
		t.Errorf("list: exit %d: %.300s %s", r.code, r.stdout, r.stderr)
	}

	// exec into a nested level of a --user level runs as its root on the
	// host, with nothing more, whatever process it joins.
	status := "grep -E '^(Uid|Groups|CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status"
	r = cmd(t, "exec", l.name+"/worker2", "--", "/bin/sh", "-c", status)
	want := "Uid: 100000 100000 100000 100000 Groups: CapPrm: 0000000000000000 CapEff: 0000000000000000 CapBnd: 0000000000000000 NoNewPrivs: 1"
	if got := strings.Join(strings.Fields(r.stdout), " "); r.code != 0 || got != want {
		t.Errorf("exec %s/worker2: exit %d, %q, want %q: %s", l.name, r.code, got, want, r.stderr)
	}
	for _, c := range [][]string{
		{"exec", l.name + "/worker", "--", "/bin/sh", "-c", status},
		{"freeze", l.name + "/sib"}, {"kill", l.name + "/sib"}, {"thaw", l.name + "/sib"},
		{"kill", l.name + "/dots"}, {"exec", l.name + "/loop", "--", "true"},
	} {
		if r := cmd(t, c...); r.code != 125 || !oneLine(r.stderr, "is invalid") {
			t.Errorf("%v: exit %d, %q %q", c, r.code, r.stdout, r.stderr)
		}
	}
	if !alive(vpid) {
		t.Errorf("the sibling level's process %d died", vpid)
	}
	if i := findInfo(listJSON(t), victim.name); i == nil || i.State != lvl.Running {
		t.Errorf("the sibling level: %+v, want running", i)
	}
	// Every management command still works on the level itself.
	if r := cmdTimeout(t, 30*time.Second, "inspect", l.name); r.code != 0 {
		t.Errorf("inspect %s: exit %d: %s", l.name, r.code, r.stderr)
	}
	if r := cmdTimeout(t, 30*time.Second, "kill", l.name); r.code != 0 {
		t.Errorf("kill %s: exit %d: %s", l.name, r.code, r.stderr)
	}
	if r := l.wait(t); r.code != 137 {
		t.Errorf("killed level exited %d: %s", r.code, r.stderr)
	}
	victim.stop(t)
}

// In -U -p --mount-proc the level's /proc is copied into
// its mount namespace locked over the host's: unmounting it fails, and no
// way shows a process that is not the level's.
func TestUserProcHidesHost(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	r := clu(t, append([]string{"-U", "-p", "--mount-proc"}, script(
		"echo pid=$$",
		"umount /proc 2>/dev/null; echo umount=$?",
		"umount -l /proc 2>/dev/null; echo umount-l=$?",
		"echo procs=$(ls /proc | grep -c '^[0-9]')",
		"echo init=$(tr '\\0' ' ' < /proc/1/cmdline)",
		"echo mounts=$(grep -c ' /proc ' /proc/self/mountinfo)")...)...)
	out := parseKV(r.stdout)
	if r.code != 0 || out["pid"] != "1" {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if out["umount"] == "0" && out["umount-l"] == "0" {
		t.Errorf("the level unmounted its /proc twice: %v", out)
	}
	if n, _ := strconv.Atoi(out["procs"]); n == 0 || n > 5 {
		t.Errorf("after unmounting, /proc shows %s processes: %s", out["procs"], r.stdout)
	}
	if !strings.HasPrefix(out["init"], "/bin/sh -c") {
		t.Errorf("after unmounting, /proc/1 is %q, not the level's CMD", out["init"])
	}
}

// mirrorMounts lists the host's mounts under a level's run directory as
// "MOUNTPOINT FSTYPE OPTIONS".
func mirrorMounts(t *testing.T, name string) []string {
	t.Helper()
	infos, err := mounts.Current()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range infos {
		if mounts.Under(m.Mountpoint, filepath.Join(runDir, "levels", name)) {
			out = append(out, m.Mountpoint+" "+m.FSType+" "+m.Options)
		}
	}
	return out
}

// What a --user level mounts under its /sys/fs/cgroup or
// run directory reaches the host only if it is a cgroup filesystem (or a
// small tmpfs of the mirror's shape), never with setuid, devices or exec;
// past --mirror-max mounts the level is stopped and the host unharmed.
func TestUserMountsStayInside(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	late := "mount -t cgroup2 none /sys/fs/cgroup/extra"
	if hierarchy(t, "cgroup2") == nil {
		late = "mount -t cgroup -o " + strings.Join(hierarchies(t)[0].Controllers, ",") + " none /sys/fs/cgroup/extra"
	}
	l := start(t, nil, append([]string{"--user"}, script(
		"mkdir -p /sys/fs/cgroup/suid /run/cl-unshare/etc /run/cl-unshare/big /run/cl-unshare/levels/fake /sys/fs/cgroup/x",
		"mount -t tmpfs -o suid,dev,exec suid /sys/fs/cgroup/suid || echo suid failed",
		"mount --bind /etc /run/cl-unshare/etc || echo etc failed",
		"mount -t tmpfs -o size=100g big /run/cl-unshare/big || echo big failed",
		// Shaped like a nested run directory, but far larger than one.
		"mount -t tmpfs -o size=100g fake /run/cl-unshare/levels/fake || echo fake failed",
		"i=0; while [ $i -lt 100 ]; do mkdir /sys/fs/cgroup/x/$i && mount -t tmpfs x$i /sys/fs/cgroup/x/$i || echo x failed; i=$((i+1)); done",
		"mkdir -p /sys/fs/cgroup/extra && "+late+" || echo late failed",
		"echo $$ > "+dir+"/pid",
		"sleep 600")...)...)
	pidOf(t, l, dir+"/pid")
	extra := filepath.Join(runDir, "levels", l.name, "cgroup", "extra") + " cgroup"
	waitFor(t, "the late cgroupfs on the host mirror", func() bool {
		return slices.ContainsFunc(mirrorMounts(t, l.name), func(m string) bool { return strings.HasPrefix(m, extra) })
	})
	if out := l.stdout.String(); out != "" {
		t.Errorf("the level's mounts failed: %s", out)
	}
	ms := mirrorMounts(t, l.name)
	for _, m := range ms {
		f := strings.Fields(m)
		opts := "," + f[2] + ","
		switch {
		case f[0] == filepath.Join(runDir, "levels", l.name):
			// the run directory, made by the host
		case f[1] == "cgroup" || f[1] == "cgroup2":
			if !strings.Contains(opts, ",nosuid,") || !strings.Contains(opts, ",nodev,") || !strings.Contains(opts, ",noexec,") {
				t.Errorf("mirrored cgroupfs with setuid, devices or exec: %s", m)
			}
		case f[1] == "tmpfs" && f[0] == filepath.Join(runDir, "levels", l.name, "cgroup"):
			// the mirror's root, made by the host
			if !strings.Contains(opts, ",nosuid,") || !strings.Contains(opts, ",nodev,") {
				t.Errorf("the mirror's tmpfs on the host allows setuid or devices: %s", m)
			}
		default:
			t.Errorf("the host shows a mount of the level's that is no cgroup filesystem: %s", m)
		}
	}
	if len(ms) > 2+len(hierarchies(t))+1 {
		t.Errorf("the host shows %d mounts of the level's: %v", len(ms), ms)
	}
	l.stop(t)

	// Past the bound the level is stopped, and says why.
	r := clu(t, append([]string{"--user", "--mirror-max", "50"}, script(
		"mkdir /sys/fs/cgroup/x",
		"i=0; while [ $i -lt 200 ]; do mkdir /sys/fs/cgroup/x/$i && mount -t tmpfs x$i /sys/fs/cgroup/x/$i || exit 3; i=$((i+1)); done",
		"sleep 60")...)...)
	if r.code != 137 || !oneLine(r.stderr, "stopped") || !strings.Contains(r.stderr, "more than --mirror-max 50") {
		t.Errorf("a level over --mirror-max: exit %d, %q", r.code, r.stderr)
	}
	// And the host can still mount.
	m := t.TempDir()
	if err := unix.Mount("none", m, "tmpfs", 0, "size=4k"); err != nil {
		t.Errorf("the host cannot mount any more: %v", err)
	} else {
		unix.Unmount(m, 0)
	}
	for _, bad := range [][]string{{"--mirror-max", "10"}, {"--user", "--mirror-max", "0"}, {"--user", "--mirror-max", "x"}} {
		if r := clu(t, append(bad, "--", "true")...); r.code != 125 || !oneLine(r.stderr, "--mirror-max") {
			t.Errorf("%v: exit %d, %q", bad, r.code, r.stderr)
		}
	}
}

// Nesting: levels nested in a --user level, with and
// without a user namespace of their own, are mirrored to the host through
// it, shown by list and reached by inspect.
func TestUserNestedMirror(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	n3 := fmt.Sprintf("echo $$ > %s/pid; exec sleep 600", dir)
	n2 := fmt.Sprintf("exec %s -U --map-users 0:0:65536 --name n3 -- /bin/sh -c %s", bin, shQuote(n3))
	l := start(t, nil, append([]string{"--user"}, script("exec "+bin+" --name n2 -- /bin/sh -c "+shQuote(n2))...)...)
	pidOf(t, l, dir+"/pid")
	nested := filepath.Join(runDir, "levels", l.name, "levels", "n2", "levels", "n3", "cgroup")
	waitFor(t, "the mirror of a level nested two deep in a --user level", func() bool {
		return slices.ContainsFunc(mirrorMounts(t, l.name), func(m string) bool { return strings.HasPrefix(m, nested+"/") || strings.HasPrefix(m, nested+" cgroup") })
	})
	// CMD writes its pid before its supervisor records it: wait for that.
	var n3i *lvl.Info
	waitFor(t, "n3 running, as list shows it", func() bool {
		top := findInfo(listJSON(t), l.name)
		if top == nil || len(top.Levels) != 1 || len(top.Levels[0].Levels) != 1 {
			return false
		}
		n3i = &top.Levels[0].Levels[0]
		return n3i.State == lvl.Running
	})
	if n3i.Name != "n3" || n3i.MirrorMounts == 0 {
		t.Errorf("n3 as list shows it: %+v", n3i)
	}
	if r := cmd(t, "inspect", l.name+"/n2/n3"); r.code != 0 || !strings.Contains(r.stdout, "state:       running") {
		t.Errorf("inspect %s/n2/n3: exit %d: %s %s", l.name, r.code, r.stdout, r.stderr)
	}
	l.stop(t)
}

// cl-unshare exec into a --user level gives CMD a pty of its
// own, so what it leaves behind cannot take the caller's terminal and
// read what the caller types after exec returned; and no file the caller
// had open beyond stdio.
func TestExecOwnTerminal(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir, self := openDir(t)
	l := start(t, nil, append([]string{"--user"}, script("echo $$ > "+dir+"/pid", "exec sleep 600")...)...)
	pidOf(t, l, dir+"/pid")

	master, slave := openPTY(t)
	defer master.Close()
	go io.Copy(io.Discard, master)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("host only"), 0o600)
	f, err := os.OpenFile(secret, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := exec.Command(bin, "exec", l.name, "--", "/bin/sh", "-c",
		"{ echo x >&8 && cat <&8; } > "+dir+"/fd8 2>&1; CLU_HELPER=grabtty exec "+self+" "+dir+"/stolen")
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	c.ExtraFiles = []*os.File{nil, nil, nil, nil, nil, f} // fd 8, above what cl-unshare uses
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	if err := c.Wait(); err != nil {
		t.Fatalf("exec: %v", err)
	}
	// The caller types, after exec returned.
	master.Write([]byte("password\n"))
	got := waitFile(t, nil, dir+"/stolen")
	for !strings.Contains(got, "read=") {
		got = waitFile(t, nil, dir+"/stolen")
	}
	if strings.Contains(got, "password") {
		t.Errorf("what exec left behind read the caller's terminal: %s", got)
	}
	if got := mustRead(t, secret); got != "host only" {
		t.Errorf("the caller's open file, mode 0600, was written through fd 8: %q", got)
	}
	if got := mustRead(t, dir+"/fd8"); !strings.Contains(got, "Bad file descriptor") {
		t.Errorf("fd 8 in CMD: %q, want none", got)
	}
	l.stop(t)
}

// A level cannot make the host read without bound
// (a hundred thousand records, hard links to one), nor get a tmpfs onto
// the host that its bounds do not hold (no size, nr_inodes=0, grown by
// a remount), and the host's copies propagate nowhere.
func TestMirrorAndWalkBounds(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	// The level's root (host uid 100000) must reach the helper that makes
	// the links in one process (5,000 forks of ln take 20 s under TCG).
	dir, self := openDir(t)
	s := "/run/cl-unshare/state"
	l := start(t, nil, append([]string{"--user"}, script(
		"mkdir -p "+s+" /run/cl-unshare/levels/nosize /run/cl-unshare/levels/noinodes /run/cl-unshare/levels/grows",
		`printf '{"name":"x"}' > `+s+`/x.json`,
		"CLU_HELPER=links "+self+" "+s+"/x.json "+s+" 5000 > "+dir+"/links.tmp && mv "+dir+"/links.tmp "+dir+"/links",
		"mount -t tmpfs -o size=0 t /run/cl-unshare/levels/nosize",
		"mount -t tmpfs -o size=64k,nr_inodes=0 t /run/cl-unshare/levels/noinodes",
		"mount -t tmpfs -o size=64k,nr_inodes=100 t /run/cl-unshare/levels/grows",
		"echo $$ > "+dir+"/pid",
		"while [ ! -e "+dir+"/grow ]; do sleep 0.01; done",
		"mount -t tmpfs -o remount,size=100m t /run/cl-unshare/levels/grows && echo grown > "+dir+"/grown",
		"sleep 600")...)...)
	waitFile(t, l, dir+"/links")
	pid := pidOf(t, l, dir+"/pid")
	grows := filepath.Join(runDir, "levels", l.name, "levels", "grows")
	onHost := func(p string) bool {
		return slices.ContainsFunc(mirrorMounts(t, l.name), func(m string) bool { return strings.HasPrefix(m, p+" ") })
	}
	waitFor(t, "the bounded tmpfs on the host", func() bool { return onHost(grows) })
	for _, p := range []string{"nosize", "noinodes"} {
		if onHost(filepath.Join(runDir, "levels", l.name, "levels", p)) {
			t.Errorf("a tmpfs with %s reached the host", p)
		}
	}
	// No copy on the host is a peer of anything in the level.
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	inside, _ := mounts.Parse(f)
	f.Close()
	groups := map[string]bool{}
	for _, m := range inside {
		for _, o := range strings.Fields(m.Optional) {
			groups[strings.TrimPrefix(o, "master:")] = true
			groups[o] = true
		}
	}
	infos, _ := mounts.Current()
	for _, m := range infos {
		for _, o := range strings.Fields(m.Optional) {
			if mounts.Under(m.Mountpoint, filepath.Join(runDir, "levels", l.name)) && strings.HasPrefix(o, "shared:") && (groups[o] || groups[strings.TrimPrefix(o, "shared:")]) {
				t.Errorf("the host's %s is in peer group %s, which the level has too", m.Mountpoint, o)
			}
		}
	}
	os.WriteFile(dir+"/grow", nil, 0o644)
	waitFile(t, l, dir+"/grown")
	waitFor(t, "the grown tmpfs to leave the host", func() bool { return !onHost(grows) })

	top := findInfo(listJSON(t), l.name)
	if top == nil {
		t.Fatal("not listed")
	}
	// The run directory's nr_inodes (4096, links count) bounds one level
	// already; the walk's budget (4096 records below a top level) all of
	// its nested ones.
	links, _ := strconv.Atoi(strings.TrimPrefix(mustRead(t, dir+"/links"), "links="))
	if n := len(top.Levels); n > 4097 || n < min(links, 4096) || n > 4096 && !strings.Contains(top.Levels[n-1].Invalid, "the rest is not read") {
		t.Errorf("list read %d nested records of %d links", n, links)
	}
	t.Logf("links %d", links)
	if links >= 4096 || links < 3000 {
		t.Errorf("the level made %d links in its 4096-inode run directory, want it stopped short of 4096 by the inode bound", links)
	}
	if r := cmd(t, "kill", l.name); r.code != 0 {
		t.Errorf("kill: %d %s", r.code, r.stderr)
	}
	l.wait(t)
}

// cl-unshare gc of a level nested two deep in a --user level
// says where to collect it before it kills anything.
func TestGCNestedInUserLevel(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	n3 := fmt.Sprintf("echo $$ > %s/n3; exec sleep 600", dir)
	n2 := fmt.Sprintf("%s --name n3 -- /bin/sh -c %s & echo $! > %s/sup3; exec sleep 600", bin, shQuote(n3), dir)
	l := start(t, nil, append([]string{"--user"}, script("exec "+bin+" --name n2 -- /bin/sh -c "+shQuote(n2))...)...)
	p3 := pidOf(t, l, dir+"/n3")
	syscall.Kill(pidOf(t, l, dir+"/sup3"), syscall.SIGKILL)
	waitFor(t, "n3's supervisor gone", func() bool {
		i := findInfo(listJSON(t), l.name)
		return i != nil && len(i.Levels) == 1 && len(i.Levels[0].Levels) == 1 && i.Levels[0].Levels[0].SupervisorPID == 0
	})
	r := cmd(t, "gc", l.name+"/n2/n3")
	if r.code != 125 || !oneLine(r.stderr, "read-only copy") || !strings.Contains(r.stderr, "cl-unshare exec "+l.name+"/n2 -- cl-unshare gc n3") {
		t.Errorf("gc %s/n2/n3: exit %d, %q", l.name, r.code, r.stderr)
	}
	if !alive(p3) {
		t.Errorf("gc killed n3's process before refusing")
	}
	l.stop(t)
}
