package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"golang.org/x/sys/unix"
)

// hostClocks reads this process's CLOCK_MONOTONIC and CLOCK_BOOTTIME.
func hostClocks() (int64, int64) {
	var m, b unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &m)
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &b)
	return m.Sec, b.Sec
}

// near reports whether got is want within a minute (the time a slow VM
// takes between the two readings, and more).
func near(got, want int64) bool { return got >= want-60 && got <= want+60 }

// --time with --monotonic and --boottime, with and without --user, with
// and without --init (which stays, as PID 1, rather than becoming CMD):
// CMD's clocks and /proc/uptime are offset, its time namespace is its
// own and in list --json, and exec enters it (and every other namespace
// CMD has).
func TestTime(t *testing.T) {
	requires(t, "root", "cgroupns")
	if !hasTimeNS() {
		oldKernelRefusesTime(t)
		return
	}
	for _, user := range []bool{false, true} {
		for _, init := range []bool{false, true} {
			t.Run(fmt.Sprintf("user=%v/init=%v", user, init), func(t *testing.T) {
				noLeaks(t)
				dir, self := openDir(t)
				args := []string{"--time", "--monotonic", "86400", "--boottime", "3600"}
				if user {
					args = append(args, "--user")
				}
				if init {
					args = append(args, "--pid", "--init")
				}
				l := start(t, nil, append(args, script(
					"CLU_HELPER=clocks "+self+" > "+dir+"/clocks.tmp; mv "+dir+"/clocks.tmp "+dir+"/clocks",
					"cut -d. -f1 /proc/uptime > "+dir+"/uptime",
					"echo $$ > "+dir+"/pid",
					"sleep 600")...)...)
				pidOf(t, l, dir+"/pid")
				mono, boot := hostClocks()
				got := strings.Fields(mustRead(t, dir+"/clocks"))
				gm, _ := strconv.ParseInt(got[0], 10, 64)
				gb, _ := strconv.ParseInt(got[1], 10, 64)
				if !near(gm, mono+86400) || !near(gb, boot+3600) {
					t.Errorf("clocks inside: monotonic %d, boottime %d; want about %d and %d (the host's %d and %d, offset)", gm, gb, mono+86400, boot+3600, mono, boot)
				}
				if up, _ := strconv.ParseInt(mustRead(t, dir+"/uptime"), 10, 64); !near(up, boot+3600) {
					t.Errorf("/proc/uptime inside: %d, want about %d", up, boot+3600)
				}
				i := findInfo(listJSON(t), l.name)
				if i == nil || i.Namespaces == nil || i.CmdPID == 0 {
					t.Fatalf("list --json: no namespaces for %s: %+v", l.name, i)
				}
				// With --init the level's process is PID 1, which is in the
				// time namespace too.
				pid := i.CmdPID
				if want := readNS(t, pid, "time"); want == readNS(t, os.Getpid(), "time") || fmt.Sprintf("time:[%d]", i.Namespaces.Time) != want {
					t.Errorf("level's time namespace %s (list --json %d), the host's %s", want, i.Namespaces.Time, readNS(t, os.Getpid(), "time"))
				}
				var links []string
				for _, ns := range nsKinds {
					links = append(links, "$(readlink /proc/self/ns/"+ns+")")
				}
				r := cmd(t, "exec", l.name, "--", "sh", "-c", "echo "+strings.Join(links, " ")+" $(cut -d. -f1 /proc/uptime)")
				f := strings.Fields(r.stdout)
				if r.code != 0 || len(f) != len(nsKinds)+1 {
					t.Fatalf("exec: exit %d, %q %q", r.code, r.stdout, r.stderr)
				}
				for k, ns := range nsKinds {
					want := readNS(t, pid, ns)
					if ns == "user" && user {
						want = readNS(t, os.Getpid(), "user") // exec never enters a user namespace
					}
					if f[k] != want {
						t.Errorf("exec'd process's %s namespace %s, the level's %s", ns, f[k], want)
					}
				}
				_, boot = hostClocks()
				if up, _ := strconv.ParseInt(f[len(nsKinds)], 10, 64); !near(up, boot+3600) {
					t.Errorf("/proc/uptime of an exec'd process: %d, want about %d", up, boot+3600)
				}
				// The exec'd command's exit status comes through the hop.
				if r := cmd(t, "exec", l.name, "--", "sh", "-c", "exit 7"); r.code != 7 {
					t.Errorf("exec ... exit 7: exit %d (%s)", r.code, r.stderr)
				}
				l.stop(t)
			})
		}
	}
}

// oldKernelRefusesTime is what TestTime checks where execve does not
// enter a time namespace (before Linux 6.2, as Debian 12's 6.1): --time
// and Config.Time are refused, saying so, and nothing is made.
func oldKernelRefusesTime(t *testing.T) {
	t.Helper()
	noLeaks(t)
	t.Logf("this kernel's execve does not enter a time namespace: checking that --time is refused")
	if r := clu(t, "--time", "--", "true"); r.code != 125 || !oneLine(r.stderr, "--time: needs Linux 6.2 or later") {
		t.Errorf("--time here: exit %d, %q; want 125 and one line saying it needs Linux 6.2", r.code, r.stderr)
	}
	_, err := lvl.Start(lvl.Config{Argv: []string{"true"}, CgroupParent: testParent, RunDir: runDir, Time: true})
	if fe, ok := err.(*lvl.FieldError); !ok || fe.Field != "Config.Time" {
		t.Errorf("Config.Time here: %v, want a FieldError of Config.Time", err)
	}
}

// Config.Time, Monotonic and Boottime through the Go API.
func TestAPITime(t *testing.T) {
	requires(t, "root", "cgroupns")
	if !hasTimeNS() {
		oldKernelRefusesTime(t)
		return
	}
	noLeaks(t)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	l, err := lvl.Start(lvl.Config{Argv: []string{"cat", "/proc/self/timens_offsets"}, CgroupParent: testParent, RunDir: runDir,
		Time: true, Monotonic: 90 * time.Minute, Boottime: 1500 * time.Millisecond, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
	got, _ := os.ReadFile(out.Name())
	if f := strings.Fields(string(got)); len(f) != 6 || f[1] != "5400" || f[2] != "0" || f[4] != "1" || f[5] != "500000000" {
		t.Errorf("timens_offsets inside: %q, want monotonic 5400 0, boottime 1 500000000", got)
	}
	_, err = lvl.Start(lvl.Config{Argv: []string{"true"}, CgroupParent: testParent, RunDir: runDir, Monotonic: time.Hour})
	if fe, ok := err.(*lvl.FieldError); !ok || fe.Field != "Config.Monotonic" {
		t.Errorf("Monotonic without Time: %v, want a FieldError of Config.Monotonic", err)
	}
}

// Offsets without --time, offsets that are not numbers or take a clock
// below zero, and a kernel without time namespaces: 125 and one line
// naming the flag, nothing made.
func TestTimeBadInput(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--monotonic", "10"}, "--monotonic: needs --time"},
		{nil, []string{"--boottime", "10"}, "--boottime: needs --time"},
		{nil, []string{"-T", "--monotonic", "ten"}, `--monotonic: invalid offset "ten" (use seconds`},
		{nil, []string{"-T", "--boottime", "-99999999999"}, `--boottime: invalid offset`},
		{nil, []string{"-T", "--boottime", "-999999999"}, "--boottime: offset -277777h46m39s takes the clock below zero"},
		{[]string{"CL_UNSHARE_FAIL_AT=no time namespaces"}, []string{"-T"}, "--time: this kernel has no time namespaces"},
		{[]string{"CL_UNSHARE_FAIL_AT=kernel before 6.2"}, []string{"-T"}, "--time: needs Linux 6.2 or later, where execve enters the new time namespace"},
		{[]string{"CL_UNSHARE_FAIL_AT=no net namespaces"}, []string{"-n"}, "--net: this kernel has no net namespaces"},
	} {
		r := cluEnv(t, c.env, append(c.args, "--", "true")...)
		if r.code != 125 || !oneLine(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, %q; want 125 and one line with %q", c.env, c.args, r.code, r.stderr, c.want)
		}
	}
}
