package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"golang.org/x/sys/unix"
)

// busyboxRoot makes a root file system of busybox alone below dir, open
// to the root of a --user level: /bin with the applets the tests use,
// /proc and /sys/fs/cgroup for the level's own, /w to start in and /out
// (mode 0777) for what the level reports.
func busyboxRoot(t *testing.T, dir string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		if os.Getenv("CL_UNSHARE_NO_SKIP") != "" {
			t.Fatalf("needs /bin/busybox (apt-get install busybox-static): %v", err)
		}
		t.Skipf("needs /bin/busybox (apt-get install busybox-static): %v", err)
	}
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "proc", "sys/fs/cgroup", "w", "out"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "out"), 0o777)
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "ls", "mkdir", "mount", "sleep", "chroot", "readlink", "grep", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// lateCgroupMount is a command that mounts, at /sys/fs/cgroup/extra, a
// cgroupfs of a hierarchy the host has (cgroup2, else a v1 one: a new v1
// hierarchy cannot be made in a cgroup namespace), and its type.
func lateCgroupMount(t *testing.T) (string, string) {
	t.Helper()
	if hierarchy(t, "cgroup2") != nil {
		return "mount -t cgroup2 none /sys/fs/cgroup/extra", "cgroup2"
	}
	return "mount -t cgroup -o " + strings.Join(hierarchies(t)[0].Controllers, ",") + " none /sys/fs/cgroup/extra", "cgroup"
}

// --root and --wd, with and without --user: CMD's / is the busybox root
// (pivot_root: neither ".." nor a second chroot leads out, and its mount
// table holds nothing of the host's), its /sys/fs/cgroup is the level's
// own tree, which the host's mirror shows, a cgroupfs it mounts there
// later included; /proc is the level's; exec enters the same root.
func TestNewRoot(t *testing.T) {
	requires(t, "root", "cgroupns")
	for _, user := range []bool{false, true} {
		t.Run(fmt.Sprintf("user=%v", user), func(t *testing.T) {
			noLeaks(t)
			dir, _ := openDir(t)
			root := busyboxRoot(t, dir)
			out := filepath.Join(root, "out")
			late, lateType := lateCgroupMount(t)
			args := []string{"--root", root, "--wd", "/w", "--pid", "--mount-proc"}
			if user {
				args = append(args, "--user")
			}
			l := start(t, nil, append(args, script(
				"cat /proc/self/cgroup > /out/cgroup",
				"pwd > /out/pwd",
				"cd /../../..; ls -a > /out/dotdot",
				"chroot / /bin/sh -c 'cd ../../../..; ls -a' > /out/chroot 2>&1",
				"ls -d /proc/[0-9]* > /out/procs",
				"mkdir /sys/fs/cgroup/extra && "+late+" && echo ok > /out/late",
				"echo $$ > /out/pid",
				"while [ ! -e /out/go ]; do sleep 0.01; done")...)...)
			pidOf(t, l, out+"/pid") // 1, in its PID namespace
			i := findInfo(listJSON(t), l.name)
			if i == nil || i.CmdPID == 0 {
				t.Fatalf("list --json: no CMD for %s: %+v", l.name, i)
			}
			pid := i.CmdPID
			for _, line := range strings.Split(mustRead(t, out+"/cgroup"), "\n") {
				if !ownLine(line) {
					t.Errorf("/proc/self/cgroup in the new root: %q is not the level's own", line)
				}
			}
			if got := mustRead(t, out+"/pwd"); got != "/w" {
				t.Errorf("--wd /w: CMD started in %q", got)
			}
			ents, _ := os.ReadDir(root)
			want := []string{".", ".."}
			for _, e := range ents {
				want = append(want, e.Name())
			}
			slices.Sort(want)
			for _, f := range []string{"dotdot", "chroot"} {
				got := strings.Fields(mustRead(t, out+"/"+f))
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("%s: CMD reached %q above its root, want only the root's own %q", f, got, want)
				}
			}
			if procs := strings.Fields(mustRead(t, out+"/procs")); slices.Contains(procs, fmt.Sprintf("/proc/%d", os.Getpid())) || procs[0] != "/proc/1" {
				t.Errorf("/proc in the new root is not the level's: %q", procs)
			}
			if got := mustRead(t, out+"/late"); got != "ok" {
				t.Fatalf("mount a cgroupfs in the new root: %q", got)
			}
			// Every mount CMD has is its root, its cgroup tree or its /proc.
			cmdMounts := mountLines(t, fmt.Sprint(pid))
			for _, m := range cmdMounts {
				mp := strings.Fields(m)[0]
				if mp != "/" && mp != "/proc" && mp != "/sys/fs/cgroup" && !strings.HasPrefix(mp, "/sys/fs/cgroup/") {
					t.Errorf("CMD's mount table has %s, not of the level", m)
				}
			}
			mirror := filepath.Join(runDir, "levels", l.name, "cgroup")
			// With a user namespace the host's mirror is a copy, made as
			// the level mounts.
			waitFor(t, "the cgroupfs mounted in the new root on the host mirror", func() bool {
				return slices.ContainsFunc(mountLines(t, "self"), func(m string) bool { return strings.HasPrefix(m, mirror+"/extra "+lateType) })
			})
			var inLevel, mirrored []string
			extra := false
			for _, m := range cmdMounts {
				if rel, ok := strings.CutPrefix(m, "/sys/fs/cgroup"); ok {
					inLevel = append(inLevel, strings.Join(strings.Fields(rel)[:2], " "))
				}
			}
			for _, m := range mountLines(t, "self") {
				if rel, ok := strings.CutPrefix(m, mirror); ok && (rel[0] == ' ' || rel[0] == '/') {
					f := strings.Fields(rel)
					mirrored = append(mirrored, f[0]+" "+f[1])
					extra = extra || f[0] == "/extra" && f[1] == lateType
				}
			}
			// The host's mirror directory is a tmpfs of its own, which a
			// layout whose root is cgroup2 (unified) covers.
			inLevel = slices.DeleteFunc(inLevel, func(s string) bool { return s == "tmpfs /" })
			mirrored = slices.DeleteFunc(mirrored, func(s string) bool { return s == "tmpfs /" })
			slices.Sort(inLevel)
			slices.Sort(mirrored)
			if !extra || !slices.Equal(inLevel, mirrored) {
				t.Errorf("the host's mirror %v, want the level's /sys/fs/cgroup %v with /extra %s", mirrored, inLevel, lateType)
			}
			// exec enters the same root, in its PID namespace.
			r := cmd(t, "exec", l.name, "--", "/bin/ls", "-a", "/")
			if got := strings.Fields(r.stdout); r.code != 0 || !slices.Equal(slices.Sorted(slices.Values(got)), want) {
				t.Errorf("exec: exit %d, / is %q (%s), want the new root's %q", r.code, got, r.stderr, want)
			}
			os.WriteFile(out+"/go", nil, 0o644)
			if r := l.wait(t); r.code != 0 {
				t.Fatalf("level exited %d: %s", r.code, r.stderr)
			}
		})
	}
}

// Config.Root and Config.WorkDir through the Go API; Config.WorkDir
// alone is a directory of the host's tree.
func TestAPINewRoot(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir, _ := openDir(t)
	root := busyboxRoot(t, dir)
	for _, c := range []struct {
		cfg  lvl.Config
		want string
	}{
		{lvl.Config{Root: root, WorkDir: "w", Argv: []string{"/bin/sh", "-c", "pwd; ls /"}}, "/w\nbin\nout\nproc\nsys\nw\n"},
		{lvl.Config{WorkDir: root, Argv: []string{"sh", "-c", "pwd"}}, root + "\n"},
	} {
		f, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
		if err != nil {
			t.Fatal(err)
		}
		c.cfg.CgroupParent, c.cfg.RunDir, c.cfg.Stdout = testParent, runDir, f
		l, err := lvl.Start(c.cfg)
		if err != nil {
			t.Fatalf("Start(Root %q, WorkDir %q): %v", c.cfg.Root, c.cfg.WorkDir, err)
		}
		if _, err := l.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
		if got, _ := os.ReadFile(f.Name()); string(got) != c.want {
			t.Errorf("Root %q, WorkDir %q: CMD printed %q, want %q", c.cfg.Root, c.cfg.WorkDir, got, c.want)
		}
		f.Close()
	}
}

// --root, --wd and --propagation given what cannot work: 125, one line
// that names the flag and what is wrong, and nothing made.
func TestNewRootBadInput(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	bare := filepath.Join(dir, "bare")
	os.Mkdir(bare, 0o755)
	os.MkdirAll(filepath.Join(dir, "noproc", "sys/fs/cgroup"), 0o755)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--root", filepath.Join(dir, "missing")}, "--root: " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{[]string{"--root", file}, "--root: " + file + " is not a directory"},
		{[]string{"--root", bare}, "--root: " + bare + " has no sys/fs/cgroup directory"},
		{[]string{"--root", filepath.Join(dir, "noproc"), "--pid", "--mount-proc"}, "has no proc directory"},
		{[]string{"--wd", filepath.Join(dir, "missing")}, "--wd: " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{[]string{"--root", filepath.Join(dir, "noproc"), "--wd", "/nowhere"}, "--wd: " + filepath.Join(dir, "noproc", "nowhere") + ": no such file"},
		{[]string{"--propagation", "bogus"}, `--propagation: invalid mode "bogus" (use slave, shared, private or unchanged)`},
		{[]string{"--root="}, "--root: empty value"},
	} {
		r := clu(t, append(c.args, "--", "true")...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// --propagation, each mode with and without --user. Every mode: the
// level's own mounts never reach the host, and its cgroup mounts (a late
// cgroupfs too) reach the host's mirror. slave and unchanged (the
// default): host mounts arrive. shared: they arrive, and a mount made in
// a mount namespace copied from the level's comes back to it. private:
// nothing arrives.
func TestPropagationModes(t *testing.T) {
	requires(t, "root", "cgroupns")
	late, lateType := lateCgroupMount(t)
	for _, mode := range []string{"slave", "shared", "private", "unchanged"} {
		for _, user := range []bool{false, true} {
			if user && (mode == "slave" || mode == "unchanged") {
				// The default, with --user: TestPropagation's and
				// TestUserNamespace's; unchanged is slave.
				continue
			}
			t.Run(fmt.Sprintf("%s/user=%v", mode, user), func(t *testing.T) {
				noLeaks(t)
				dir, self := openDir(t)
				shared := filepath.Join(dir, "shared")
				for _, d := range []string{shared, shared + "/late", shared + "/from-level", shared + "/nested"} {
					os.Mkdir(d, 0o777)
				}
				if err := unix.Mount(shared, shared, "", unix.MS_BIND, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Unmount(shared, unix.MNT_DETACH) })
				if err := unix.Mount("", shared, "", unix.MS_SHARED, ""); err != nil {
					t.Fatal(err)
				}
				args := []string{"--propagation", mode}
				if user {
					args = append(args, "--user")
				}
				l := start(t, nil, append(args, script(
					"echo $$ > "+dir+"/pid",
					"while [ ! -e "+dir+"/go1 ]; do sleep 0.01; done",
					"grep -q ' "+shared+"/late ' /proc/self/mountinfo && echo yes > "+dir+"/seen-late",
					"mount -t tmpfs level "+shared+"/from-level || exit 11",
					"CLU_HELPER=nestedmount "+self+" "+shared+"/nested || exit 12",
					"grep -q ' "+shared+"/nested ' /proc/self/mountinfo && echo yes > "+dir+"/seen-nested",
					"mkdir /sys/fs/cgroup/extra || exit 13",
					late+" || exit 14",
					"echo done > "+dir+"/mounted",
					"while [ ! -e "+dir+"/go2 ]; do sleep 0.01; done")...)...)
				pidOf(t, l, dir+"/pid")
				if err := unix.Mount("late", shared+"/late", "tmpfs", 0, ""); err != nil {
					t.Fatal(err)
				}
				defer unix.Unmount(shared+"/late", unix.MNT_DETACH)
				os.WriteFile(dir+"/go1", nil, 0o644)
				waitFile(t, l, dir+"/mounted")
				mirror := filepath.Join(runDir, "levels", l.name, "cgroup")
				waitFor(t, "the late cgroupfs on the host mirror", func() bool {
					return slices.ContainsFunc(mountLines(t, "self"), func(m string) bool { return strings.HasPrefix(m, mirror+"/extra "+lateType) })
				})
				extra := false
				for _, m := range mountLines(t, "self") {
					f := strings.Fields(m)
					if f[0] == shared+"/from-level" || f[0] == shared+"/nested" {
						t.Errorf("the level's mount at %s reached the host", f[0])
					}
					extra = extra || f[0] == mirror+"/extra" && f[1] == lateType
				}
				if !extra {
					t.Errorf("the %s the level mounted at /sys/fs/cgroup/extra is not at %s/extra on the host", lateType, mirror)
				}
				_, err := os.Stat(dir + "/seen-late")
				if seen, want := err == nil, mode != "private"; seen != want {
					t.Errorf("a host mount made after the start reached the level: %v, want %v", seen, want)
				}
				_, err = os.Stat(dir + "/seen-nested")
				if seen, want := err == nil, mode == "shared"; seen != want {
					t.Errorf("a mount made in a namespace copied from the level's came back to it: %v, want %v", seen, want)
				}
				os.WriteFile(dir+"/go2", nil, 0o644)
				if r := l.wait(t); r.code != 0 {
					t.Fatalf("level exited %d: %s", r.code, r.stderr)
				}
			})
		}
	}
}
