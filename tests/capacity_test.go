package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	lvl "github.com/cl-unshare/cl-unshare/level"
	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
	"golang.org/x/sys/unix"
)

// checkRooms runs `cl-unshare check --json` (with argv's prefix, if any)
// and returns its capacity by limit.
func checkRooms(t *testing.T, prefix ...string) (map[string]lvl.Room, lvl.Report) {
	t.Helper()
	argv := append(prefix, bin, "check", "--json")
	out, _ := exec.Command(argv[0], argv[1:]...).Output()
	var rep lvl.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("check --json: %v: %s", err, out)
	}
	rooms := map[string]lvl.Room{}
	for _, r := range rep.Capacity {
		rooms[r.Limit] = r
	}
	return rooms, rep
}

func hostMounts(t *testing.T) int {
	t.Helper()
	infos, err := mounts.Current()
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

// TestCapacityMounts: check says how many more levels fs.mount-max lets
// start, counting the mounts a level really adds to the host's table, and
// a start with no room left fails in one line naming the limit, leaving
// nothing. fs.mount-max is lowered for the moment of that start only.
func TestCapacityMounts(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	rooms, _ := checkRooms(t)
	r, ok := rooms["fs.mount-max"]
	if !ok {
		t.Fatalf("check reports no fs.mount-max room: %+v", rooms)
	}
	if r.Max != readSysctl(t, "fs/mount-max") || r.Levels != (r.Max-r.Used)/r.PerLevel {
		t.Errorf("fs.mount-max room %+v does not add up", r)
	}
	dir := t.TempDir()
	// A start makes the template first if there is none (RUN's own bind
	// and the pin: two mounts, once): counted before, not as the level's.
	clu(t, "--", "true")
	before := hostMounts(t)
	l := start(t, nil, script("echo $$ > "+dir+"/pid", "sleep 600")...)
	pidOf(t, l, dir+"/pid")
	if added := hostMounts(t) - before; added != r.PerLevel {
		t.Errorf("a level added %d mounts to the host's table; check says %d", added, r.PerLevel)
	}
	l.stop(t)

	var u unix.Utsname
	unix.Uname(&u)
	cases := map[string]int{"no room at all": 0}
	if kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 6, 8) {
		// Where the kernel counts mounts cheaply, the start refuses before
		// the host's copies of the mirror, which no limit stops, arrive.
		cases["room for less than a level"] = r.PerLevel - 1
	}
	for what, room := range cases {
		used := hostMounts(t)
		res := withSysctl(t, "fs/mount-max", used+room, func() result { return clu(t, "--", "true") })
		lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
		if res.code != 125 || len(lines) != 1 || !strings.Contains(lines[0], "fs.mount-max") {
			t.Errorf("%s: start: exit %d, want 125 and one line naming fs.mount-max:\n%s", what, res.code, res.stderr)
		}
	}
}

// TestCapacityCgroups: check says how many more levels the
// cgroup.max.descendants of the cgroup levels go under (and of its
// ancestors) lets start, and a start past it fails in one line naming it.
func TestCapacityCgroups(t *testing.T) {
	requires(t, "root", "cgroupns")
	noLeaks(t)
	h := hierarchy(t, "cgroup2")
	if h == nil {
		// cgroup v1 has no such limit: check must not report one.
		rooms, _ := checkRooms(t)
		for l := range rooms {
			if strings.Contains(l, "cgroup.max.descendants") {
				t.Errorf("check reports %s on a host without cgroup2", l)
			}
		}
		return
	}
	capped := filepath.Join(testParent, fmt.Sprintf("capped-%d", os.Getpid()))
	dir := h.Dir(filepath.Join(cgroup.Base(*h), capped))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir + "/check"); os.Remove(dir); os.Remove(filepath.Dir(dir)) })
	if err := os.WriteFile(dir+"/cgroup.max.descendants", []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	// check, run from a cgroup of its own in the capped one: on cgroup2 a
	// launcher's levels go beside it, in its parent.
	if err := os.Mkdir(dir+"/check", 0o755); err != nil {
		t.Fatal(err)
	}
	rooms, rep := checkRooms(t, "sh", "-c", `echo $$ > "$0"/check/cgroup.procs && exec "$@"`, dir)
	r, ok := rooms[dir+"/cgroup.max.descendants"]
	if !ok || r.Max != 2 || r.Used != 1 || r.Levels != 0 || r.PerLevel < 2 || rep.CanStart {
		t.Errorf("check in %s/check: room %+v (found %v), can start %v; want max 2, 1 used, room for no level", dir, r, ok, rep.CanStart)
	}
	res := clu(t, "--cgroup-parent", capped, "--", "true")
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	if res.code != 125 || len(lines) != 1 || !strings.Contains(lines[0], "cgroup.max.descendants") {
		t.Errorf("start under %s: exit %d, want 125 and one line naming cgroup.max.descendants:\n%s", dir, res.code, res.stderr)
	}
}

func readSysctl(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// withSysctl runs f with sysctl name set to v, and puts it back at once.
func withSysctl(t *testing.T, name string, v int, f func() result) result {
	t.Helper()
	was := readSysctl(t, name)
	p := "/proc/sys/" + name
	if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(p, []byte(strconv.Itoa(was)), 0o644)
	return f()
}

func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	fmt.Sscanf(release, "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}
