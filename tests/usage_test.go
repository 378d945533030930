package tests

import (
	"regexp"
	"strings"
	"testing"
)

// The exit event says what the level used, from its outer cgroups in
// whichever hierarchy counts it (cgroup2 first, v1 where it is not), and
// --stats says it on one line of stderr, as systemd-run --wait does.
func TestUsageAtExit(t *testing.T) {
	requires(t, "root", "cgroupns")
	needController(t, "memory")
	noLeaks(t)
	// A 16 MiB buffer, and a loop that spends CPU time.
	code, stderr, exit := runStatus(t, "--stats", "--", "sh", "-c",
		"dd if=/dev/zero of=/dev/null bs=16M count=1 2>/dev/null; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
	if code != 0 || exit.Usage == nil {
		t.Fatalf("exit %d, event %+v, stderr %q", code, exit, stderr)
	}
	u := exit.Usage
	if u.MemoryPeakBytes == nil || *u.MemoryPeakBytes < 16<<20 {
		t.Errorf("memory peak %v, want at least 16 MiB", u.MemoryPeakBytes)
	}
	if u.CPUUserUsec == nil || u.CPUSystemUsec == nil || *u.CPUUserUsec+*u.CPUSystemUsec == 0 {
		t.Errorf("CPU time %v user, %v system: want some", u.CPUUserUsec, u.CPUSystemUsec)
	}
	if hierarchy(t, "blkio") != nil && (u.IOReadBytes == nil || u.IOWriteBytes == nil) {
		t.Errorf("IO %v read, %v written: the blkio hierarchy counts them", u.IOReadBytes, u.IOWriteBytes)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !regexp.MustCompile(`^cl-unshare: level \S+: CPU [0-9.]+s user, [0-9.]+s system; memory peak [0-9.]+[MG]`).MatchString(lines[0]) {
		t.Errorf("--stats printed %q, want one line with CPU time and the memory peak", stderr)
	}
	if r := clu(t, "--exec", "--stats", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "--stats") {
		t.Errorf("--exec --stats: exit %d, %q; want 125 naming --stats", r.code, r.stderr)
	}
}
