package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"golang.org/x/sys/unix"
)

// kept reports whether file is a bind mount of process pid's namespace
// of kind ns.
func kept(t *testing.T, file string, pid int, ns string) bool {
	t.Helper()
	var a, b unix.Stat_t
	var fs unix.Statfs_t
	return unix.Stat(file, &a) == nil && unix.Statfs(file, &fs) == nil && fs.Type == unix.NSFS_MAGIC &&
		unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, ns), &b) == nil && a.Ino == b.Ino
}

// mountedOn reports whether the host has a mount on path.
func mountedOn(t *testing.T, path string) bool {
	for _, m := range mountLines(t, "self") {
		if strings.Fields(m)[0] == path {
			return true
		}
	}
	return false
}

// --NS=FILE, with and without --user: each namespace the level has is
// kept by a bind mount on its file, which nsenter can enter; when the
// level goes, the mounts go, and the files cl-unshare made, but not one
// that was there before.
func TestPersist(t *testing.T) {
	requires(t, "root", "cgroupns")
	for _, user := range []bool{false, true} {
		t.Run(fmt.Sprintf("user=%v", user), func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			pre := filepath.Join(dir, "uts")
			os.WriteFile(pre, nil, 0o644)
			files := map[string]string{"net": dir + "/net", "uts": pre, "pid": dir + "/pid", "ipc": dir + "/ipc"}
			args := []string{"--uts=" + pre, "--hostname", "kept", "--net=" + files["net"], "-p=" + files["pid"], "--ipc=" + files["ipc"]}
			if hasTimeNS() {
				files["time"] = dir + "/time"
				args = append(args, "-T="+files["time"])
			}
			if user {
				files["user"] = dir + "/user"
				args = append(args, "--user="+files["user"])
			}
			l := start(t, nil, append(args, "--", "sleep", "600")...)
			var i *lvl.Info
			waitFor(t, "the level listed", func() bool { i = findInfo(listJSON(t), l.name); return i != nil && i.CmdPID != 0 })
			for ns, f := range files {
				if !kept(t, f, i.CmdPID, ns) {
					t.Errorf("--%s=%s: not a bind mount of CMD's %s namespace", ns, f, ns)
				}
			}
			if out, err := exec.Command("nsenter", "--uts="+pre, "hostname").Output(); err != nil || strings.TrimSpace(string(out)) != "kept" {
				t.Errorf("nsenter --uts=%s hostname: %q, %v; want kept", pre, out, err)
			}
			l.stop(t)
			for ns, f := range files {
				_, err := os.Stat(f)
				switch {
				case mountedOn(t, f):
					t.Errorf("the %s namespace is still mounted on %s after the level", ns, f)
				case f == pre && err != nil:
					t.Errorf("%s, there before the level, was removed: %v", f, err)
				case f != pre && err == nil:
					t.Errorf("%s, made for the level, is still there", f)
				}
			}
		})
	}
}

// A level whose supervisor was killed keeps its namespaces until gc,
// which unmounts them, and removes only the files it made that are still
// there.
func TestPersistGC(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	f, g := filepath.Join(dir, "net"), filepath.Join(dir, "uts")
	orphan := start(t, nil, "--net="+f, "--uts="+g, "--", "sleep", "600")
	waitFor(t, "the level listed", func() bool { i := findInfo(listJSON(t), orphan.name); return i != nil && i.CmdPID != 0 })
	orphan.cmd.Process.Kill()
	<-orphan.done
	if !mountedOn(t, f) || !mountedOn(t, g) {
		t.Fatalf("the namespaces are not kept on %s and %s", f, g)
	}
	// Meanwhile someone unmounts g and puts a file of their own there:
	// gc must leave it, as it is not the file cl-unshare made.
	if err := unix.Unmount(g, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	os.Remove(g)
	if err := os.WriteFile(g, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := cmd(t, "gc"); r.code != 0 || !strings.Contains(r.stdout, "removed level "+orphan.name) {
		t.Fatalf("gc: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(f); err == nil || mountedOn(t, f) {
		t.Errorf("gc left %s (mounted: %v)", f, mountedOn(t, f))
	}
	if b, err := os.ReadFile(g); err != nil || string(b) != "mine" {
		t.Errorf("gc removed or changed %s, a file it did not make: %q, %v", g, b, err)
	}
}

// Config.Persist through the Go API, and its refusals.
func TestAPIPersist(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	f := filepath.Join(t.TempDir(), "ipc")
	l, err := lvl.Start(lvl.Config{Argv: []string{"sleep", "600"}, CgroupParent: testParent, RunDir: runDir, IPC: true, Persist: map[string]string{"ipc": f}})
	if err != nil {
		t.Fatal(err)
	}
	if !kept(t, f, l.Pid(), "ipc") {
		t.Errorf("Persist ipc: %s is not CMD's IPC namespace", f)
	}
	if err := l.Kill(); err != nil {
		t.Error(err)
	}
	l.Wait()
	if _, err := os.Stat(f); err == nil {
		t.Errorf("%s is still there after the level", f)
	}
	for _, c := range []struct {
		cfg   lvl.Config
		field string
	}{
		{lvl.Config{Persist: map[string]string{"net": f}}, "Config.Persist.net"},
		{lvl.Config{Persist: map[string]string{"mnt": f}}, "Config.Persist"},
	} {
		c.cfg.Argv, c.cfg.CgroupParent, c.cfg.RunDir = []string{"true"}, testParent, runDir
		_, err := lvl.Start(c.cfg)
		if fe, ok := err.(*lvl.FieldError); !ok || fe.Field != c.field {
			t.Errorf("Persist %v: %v, want a FieldError of %s", c.cfg.Persist, err, c.field)
		}
	}
}

// --NS=FILE where no file can hold it: 125, one line naming the flag,
// nothing made.
func TestPersistBadInput(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mounted")
	os.WriteFile(mnt, nil, 0o644)
	if err := unix.Mount("/dev/null", mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--net=" + dir + "/no/such/file"}, "--net: " + dir + "/no/such: no such directory (make it first)"},
		{[]string{"--uts=" + dir}, "--uts: " + dir + " is not a regular file"},
		{[]string{"--ipc=" + mnt}, "--ipc: " + mnt + " is a mount point already"},
		{[]string{"--exec", "--net=" + dir + "/x"}, "--exec: cannot be combined with --NS=FILE"},
	} {
		r := clu(t, append(c.args, "--", "true")...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if _, err := os.Stat(dir + "/x"); err == nil {
		t.Errorf("a refused --net=FILE made the file")
	}
}

// A start that fails after keeping one namespace (the second one's bind
// fails) undoes the first: nothing mounted, no file left.
func TestPersistFailure(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	r := cluEnv(t, []string{"CL_UNSHARE_FAIL_AT=keep uts"}, "--net="+dir+"/net", "--uts="+dir+"/uts", "--", "true")
	if r.code != 125 || !oneLine(r.stderr, "failure injected") {
		t.Errorf("exit %d, %q; want 125 and one line", r.code, r.stderr)
	}
	for _, f := range []string{dir + "/net", dir + "/uts"} {
		if _, err := os.Stat(f); err == nil || mountedOn(t, f) {
			t.Errorf("a failed start left %s", f)
		}
	}
}

// A command that ends at once still gets its namespaces kept (they are
// bound before it runs) and exits 0, leaving nothing.
func TestPersistShortCommand(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	for i := 0; i < 10; i++ {
		if r := clu(t, "--net="+dir+"/net", "--pid="+dir+"/pid", "--", "true"); r.code != 0 || r.stderr != "" {
			t.Fatalf("run %d: exit %d, %q", i, r.code, r.stderr)
		}
		for _, f := range []string{dir + "/net", dir + "/pid"} {
			if _, err := os.Stat(f); err == nil {
				t.Fatalf("run %d left %s", i, f)
			}
		}
	}
}
