package tests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	lvl "github.com/cl-unshare/cl-unshare/level"
)

// nsKinds are the namespaces exec enters, and list shows.
var nsKinds = []string{"cgroup", "mnt", "net", "uts", "ipc", "pid", "user", "time"}

// --net, --uts (with --hostname and --domainname) and --ipc, with and
// without --user: CMD is in namespaces of its own, the loopback interface
// is up and answers, the names are set; list shows each namespace's inode;
// exec enters every namespace CMD has.
func TestNetUTSIPC(t *testing.T) {
	requires(t, "root", "cgroupns")
	for _, user := range []bool{false, true} {
		t.Run(fmt.Sprintf("user=%v", user), func(t *testing.T) {
			noLeaks(t)
			// With --user, the level's root must reach the helper and the files.
			dir, self := openDir(t)
			args := []string{"--net", "--uts", "--hostname", "lvl-host", "--domainname", "lvl.dom", "--ipc"}
			if user {
				args = append(args, "--user")
			}
			l := start(t, nil, append(args, script(
				"CLU_HELPER=netcheck "+self+" > "+dir+"/net.tmp; mv "+dir+"/net.tmp "+dir+"/net",
				"echo $(cat /proc/sys/kernel/hostname) $(cat /proc/sys/kernel/domainname) > "+dir+"/names",
				"echo $$ > "+dir+"/pid",
				"sleep 600")...)...)
			pid := pidOf(t, l, dir+"/pid")
			if got := waitFile(t, l, dir+"/net"); !strings.Contains(got, "interfaces lo:up\n") || !strings.Contains(got, "loopback: ok") {
				t.Errorf("network inside: %q, want only lo, up, and 127.0.0.1 answering", got)
			}
			if got := strings.TrimSpace(mustRead(t, dir+"/names")); got != "lvl-host lvl.dom" {
				t.Errorf("hostname and domain name inside: %q, want lvl-host lvl.dom", got)
			}
			host, _ := os.ReadFile("/proc/sys/kernel/hostname")
			if strings.TrimSpace(string(host)) == "lvl-host" {
				t.Errorf("the host's hostname changed")
			}
			for _, ns := range []string{"net", "uts", "ipc"} {
				if readNS(t, pid, ns) == readNS(t, os.Getpid(), ns) {
					t.Errorf("CMD shares the host's %s namespace", ns)
				}
			}
			i := findInfo(listJSON(t), l.name)
			if i == nil || i.Namespaces == nil {
				t.Fatalf("list --json: no namespaces for %s: %+v", l.name, i)
			}
			if want := readNS(t, pid, "net"); fmt.Sprintf("net:[%d]", i.Namespaces.Net) != want {
				t.Errorf("list --json net namespace %d, CMD's is %s", i.Namespaces.Net, want)
			}
			// exec enters every namespace CMD is in, as nsenter -a would.
			var links []string
			for _, ns := range nsKinds {
				links = append(links, "$(readlink /proc/self/ns/"+ns+")")
			}
			r := cmd(t, "exec", l.name, "--", "sh", "-c", "echo "+strings.Join(links, " "))
			got := strings.Fields(r.stdout)
			if r.code != 0 || len(got) != len(nsKinds) {
				t.Fatalf("exec: exit %d, %q %q", r.code, r.stdout, r.stderr)
			}
			for k, ns := range nsKinds {
				want := readNS(t, pid, ns)
				if ns == "user" && user {
					// A Go program cannot enter a user namespace: exec runs
					// CMD as the level root's host ids, without capabilities,
					// in the host's user namespace (the security issue's rule).
					want = readNS(t, os.Getpid(), "user")
				}
				if got[k] != want {
					t.Errorf("exec'd process's %s namespace %s, CMD's %s", ns, got[k], want)
				}
			}
			l.stop(t)
		})
	}
}

// --exec makes the namespaces itself (it is not cloned): the same names
// and loopback in a level with no supervisor.
func TestNetUTSIPCExecInPlace(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	name := fmt.Sprintf("nsexec%d", os.Getpid())
	r := clu(t, "--exec", "--name", name, "--net", "--uts", "--hostname", "in-place", "--ipc", "--", "sh", "-c",
		"cat /proc/sys/kernel/hostname; grep -c : /proc/self/net/dev; readlink /proc/self/ns/ipc")
	t.Cleanup(func() { cmd(t, "gc", name) })
	lines := strings.Fields(r.stdout)
	if r.code != 0 || len(lines) != 3 || lines[0] != "in-place" || lines[1] != "1" || lines[2] == readNS(t, os.Getpid(), "ipc") {
		t.Errorf("--exec with namespaces: exit %d, %q (stderr %q); want hostname in-place, one interface, an IPC namespace of its own", r.code, r.stdout, r.stderr)
	}
	cmd(t, "gc", name)
}

// Names without a UTS namespace, and a name the kernel cannot hold: 125,
// one line naming the flag, nothing made.
func TestNetUTSIPCBadInput(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--hostname", "x"}, "--hostname: needs --uts"},
		{[]string{"--domainname", "x"}, "--domainname: needs --uts"},
		{[]string{"--uts", "--hostname", strings.Repeat("h", 65)}, "--hostname: "},
	} {
		r := clu(t, append(c.args, "--", "true")...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

func readNS(t *testing.T, pid int, ns string) string {
	t.Helper()
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The same through the Go API: Config.Net, UTS, Hostname, IPC; and a
// name without UTS is a FieldError naming the field.
func TestAPINetUTSIPC(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	l, err := lvl.Start(lvl.Config{
		Name: fmt.Sprintf("apins-%d", os.Getpid()), CgroupParent: testParent, Stdout: out,
		Net: true, UTS: true, Hostname: "api-host", IPC: true,
		Argv: []string{"/bin/sh", "-c", "cat /proc/sys/kernel/hostname; grep -c : /proc/self/net/dev; readlink /proc/self/ns/ipc"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ws, err := l.Wait(); err != nil || lvl.ExitCode(ws) != 0 {
		t.Fatalf("exit %d, %v", lvl.ExitCode(ws), err)
	}
	lines := strings.Fields(mustRead(t, out.Name()))
	if len(lines) != 3 || lines[0] != "api-host" || lines[1] != "1" || lines[2] == readNS(t, os.Getpid(), "ipc") {
		t.Errorf("CMD saw %q; want hostname api-host, one interface, an IPC namespace of its own", lines)
	}
	var fe *lvl.FieldError
	if _, err := lvl.Start(lvl.Config{Hostname: "x", Argv: []string{"true"}}); !errors.As(err, &fe) || fe.Field != "Config.Hostname" {
		t.Errorf("Hostname without UTS: %v, want a FieldError for Config.Hostname", err)
	}
}

// --map-users and --map-groups take unshare's OUTER,INNER,COUNT too: the
// same range spelled both ways gives the same maps.
func TestMapUnshareSpelling(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	r := clu(t, "--user", "--", "cat", "/proc/self/uid_map", "/proc/self/gid_map")
	f := strings.Fields(r.stdout)
	if r.code != 0 || len(f) != 6 {
		t.Fatalf("--user: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	comma := f[1] + "," + f[0] + "," + f[2]
	r2 := clu(t, "--user", "--map-users", comma, "--map-groups", comma, "--", "cat", "/proc/self/uid_map", "/proc/self/gid_map")
	if r2.code != 0 || strings.Join(strings.Fields(r2.stdout), " ") != strings.Join(f, " ") {
		t.Errorf("--map-users %s: exit %d, %q (stderr %q); want the maps of %s:%s:%s, %q", comma, r2.code, r2.stdout, r2.stderr, f[0], f[1], f[2], r.stdout)
	}
}

// --setuid and --setgid, as unshare -S -G: CMD runs with those ids and
// no supplementary groups, after the level is set up (as root); with
// --user they are ids of the level's user namespace; as PID 1 with
// --init, cl-unshare keeps root and only CMD changes.
func TestSetIDs(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	show := `echo $(id -u) $(id -g) $(id -G); grep -E "^(Uid|Gid|CapEff):" /proc/self/status | tr -s "\t" " " | tr "\n" " "`
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"1234 4321 4321", "Uid: 1234 1234 1234 1234", "Gid: 4321 4321 4321 4321", "CapEff: 0000000000000000"}},
		{[]string{"--pid", "--init"}, []string{"1234 4321 4321", "Uid: 1234 1234 1234 1234"}},
		{[]string{"--exec", "--name", fmt.Sprintf("setid%d", os.Getpid())}, []string{"1234 4321 4321", "Uid: 1234 1234 1234 1234"}},
		{[]string{"--user"}, []string{"1234 4321", "Uid: 1234 1234 1234 1234", "CapEff: 0000000000000000"}},
	} {
		r := clu(t, append(c.args, "--setuid", "1234", "--setgid", "4321", "--", "sh", "-c", show)...)
		if c.args != nil && c.args[0] == "--exec" {
			cmd(t, "gc", c.args[2])
		}
		for _, w := range c.want {
			if r.code != 0 || !strings.Contains(r.stdout, w) {
				t.Errorf("%v --setuid 1234 --setgid 4321: exit %d, %q (stderr %q); want %q", c.args, r.code, r.stdout, r.stderr, w)
			}
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--setuid", "x"}, "--setuid: invalid id"},
		{[]string{"--setgid", "-5"}, "--setgid: invalid id"},
		{[]string{"--user", "--map-users", "0:100000:1000", "--setuid", "1000"}, "--setuid: uid 1000 is not mapped"},
	} {
		if r := clu(t, append(c.args, "--", "true")...); r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// --setgroups allow|deny, as unshare: a --user level's /proc/PID/setgroups
// says which, deny by default; with allow, --setgid drops the groups.
func TestSetgroups(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user"}, "deny"},
		{[]string{"--user", "--setgroups", "deny"}, "deny"},
		{[]string{"--user", "--setgroups", "allow"}, "allow"},
		{[]string{"--user", "--setgroups", "allow", "--setgid", "5"}, "allow\n5\n"},
	} {
		script := "cat /proc/self/setgroups"
		if strings.Contains(c.want, "5") {
			script += "; id -G"
		}
		r := clu(t, append(c.args, "--", "sh", "-c", script)...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, c.want) || (strings.Contains(c.want, "5") && r.stdout != c.want) {
			t.Errorf("%v: exit %d, %q (stderr %q); want %q", c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--setgroups", "allow"}, "--setgroups: needs --user"},
		{[]string{"--user", "--setgroups", "maybe"}, "--setgroups: invalid value"},
	} {
		if r := clu(t, append(c.args, "--", "true")...); r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// --keep-caps: CMD, made uid 1000 of the level's user namespace by
// --setuid, keeps its capabilities there as ambient ones (with and
// without --init); without it, it has none; without --user it is refused.
func TestKeepCaps(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	show := `echo $(id -u) $(grep -E "^(CapEff|CapAmb):" /proc/self/status | tr -s "\t" " " | tr "\n" " ")`
	full := fmt.Sprintf("%016x", uint64(1)<<(capLast(t)+1)-1)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "--setuid", "1000", "--keep-caps"}, "1000 CapEff: " + full + " CapAmb: " + full},
		{[]string{"--user", "--pid", "--init", "--setuid", "1000", "--keep-caps"}, "1000 CapEff: " + full + " CapAmb: " + full},
		{[]string{"--user", "--setuid", "1000"}, "1000 CapEff: 0000000000000000 CapAmb: 0000000000000000"},
	} {
		r := clu(t, append(c.args, "--", "sh", "-c", show)...)
		if got := strings.TrimSpace(r.stdout); r.code != 0 || got != c.want {
			t.Errorf("%v: exit %d, %q (%s), want %q", c.args, r.code, got, r.stderr, c.want)
		}
	}
	if r := clu(t, "--keep-caps", "--", "true"); r.code != 125 || !oneLine(r.stderr, "--keep-caps: needs --user") {
		t.Errorf("--keep-caps without --user: exit %d, %q", r.code, r.stderr)
	}
}

func capLast(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(mustRead(t, "/proc/sys/kernel/cap_last_cap"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// --map-current-user (-c), --map-user and --map-group, as unshare: the
// caller's ids (root's, here) mapped to the ids given; an id that would
// leave the level's root unmapped is refused, saying what to do.
func TestMapCurrentUser(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, args := range [][]string{{"-c"}, {"--map-current-user"}, {"--map-user", "0", "--map-group", "0"}} {
		r := clu(t, append(args, "--", "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/user")...)
		f := strings.Fields(r.stdout)
		if r.code != 0 || len(f) != 7 || strings.Join(f[:6], " ") != "0 0 1 0 0 1" || f[6] == readNS(t, os.Getpid(), "user") {
			t.Errorf("%v: exit %d, %q (%s); want maps 0 0 1 in a user namespace of its own", args, r.code, r.stdout, r.stderr)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--map-user", "1000"}, "--map-user: 1000 would leave the level's root unmapped"},
		{[]string{"--map-group", "5"}, "--map-group: 5 would leave the level's root unmapped"},
		{[]string{"--map-user", "x"}, `--map-user: invalid id "x"`},
	} {
		r := clu(t, append(c.args, "--", "true")...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}
