package procview

import (
	"strings"
	"testing"
	"time"
)

const hostCPUInfo = `processor	: 0
model name	: Test CPU
core id		: 0
cpu cores	: 4
siblings	: 4

processor	: 1
model name	: Test CPU
core id		: 1
cpu cores	: 4
siblings	: 4

processor	: 2
model name	: Test CPU
core id		: 2
cpu cores	: 4
siblings	: 4

`

func TestCPUInfo(t *testing.T) {
	got := CPUInfo(hostCPUInfo, &View{CPUs: []int{2}})
	if strings.Count(got, "processor") != 1 || !strings.Contains(got, "processor\t: 0") || !strings.Contains(got, "core id\t\t: 0") ||
		!strings.Contains(got, "cpu cores\t: 1") || strings.Contains(got, ": 2") {
		t.Errorf("CPUInfo of CPU 2 alone:\n%s", got)
	}
	if got := CPUInfo(hostCPUInfo, &View{CPUs: []int{0, 1, 2}}); strings.Count(got, "processor") != 3 {
		t.Errorf("CPUInfo of all three:\n%s", got)
	}
}

func TestMeminfo(t *testing.T) {
	host := "MemTotal:       16000000 kB\nMemFree:        8000000 kB\nMemAvailable:   9000000 kB\nBuffers:          100000 kB\nCached:          2000000 kB\nActive:          9999999 kB\nSwapTotal:       4000000 kB\nSwapFree:        4000000 kB\nHugePages_Total:       0\n"
	v := &View{MemTotal: 256 << 20, MemUsed: 56 << 20, MemCache: 16 << 20, SwapTotal: 64 << 20, SwapUsed: 4 << 20}
	got := Meminfo(host, v)
	for _, want := range []string{"MemTotal:         262144 kB", "MemFree:          204800 kB", "MemAvailable:     221184 kB",
		"Cached:            16384 kB", "Buffers:               0 kB", "Active:           262144 kB", "SwapTotal:         65536 kB",
		"SwapFree:          61440 kB", "HugePages_Total:       0"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("Meminfo has no %q:\n%s", want, got)
		}
	}
	// Use above the limit (a v1 cgroup may briefly): nothing negative.
	if got := Meminfo(host, &View{MemTotal: 1 << 20, MemUsed: 2 << 20}); !strings.Contains(got, "MemFree:               0 kB") {
		t.Errorf("Meminfo over the limit:\n%s", got)
	}
}

func TestSmallFiles(t *testing.T) {
	v := &View{CPUs: []int{4, 5}, Uptime: 90 * time.Second, UserUsec: 30e6, SystemUsec: 10e6, Load: [3]float64{1.5, 0.25, 0}, Running: 2, Tasks: 7,
		SwapTotal: 2 << 20, SwapUsed: 1 << 20}
	for _, c := range []struct{ name, got, want string }{
		{"online", Online(v), "0-1\n"},
		{"online of one", Online(&View{CPUs: []int{3}}), "0\n"},
		{"uptime", Uptime(v), "90.00 140.00\n"},
		{"loadavg", Loadavg("0.1 0.2 0.3 1/300 4242\n", v), "1.50 0.25 0.00 2/7 4242\n"},
		{"swaps", Swaps(v), "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\nnone\t\t\t\t\tvirtual\t\t2048\t\t1024\t\t0\n"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
	st := Stat("cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu2 1 2 3 4\nintr 5\nbtime 6\n", v)
	lines := strings.Split(strings.TrimSpace(st), "\n")
	if len(lines) != 5 || lines[0] != "cpu  3000 0 1000 14000 0 0 0 0 0 0" || lines[1] != "cpu0 1500 0 500 7000 0 0 0 0 0 0" ||
		!strings.HasPrefix(lines[2], "cpu1 ") || lines[3] != "intr 5" || lines[4] != "btime 6" {
		t.Errorf("Stat:\n%s", st)
	}
}

func TestParseList(t *testing.T) {
	if got := parseList("0-2,5,7-8\n"); len(got) != 6 || got[0] != 0 || got[3] != 5 || got[5] != 8 {
		t.Errorf("parseList = %v", got)
	}
}

// TestMeminfoLayout holds the rendering to the kernel's own layout
// ("%-16s%8d kB"), key by key, long keys and wide numbers too.
func TestMeminfoLayout(t *testing.T) {
	host := "MemTotal:       16000000 kB\nDirectMap2M:    123456789 kB\nHugePages_Total:       0\nVeryLongKeyNameHere: 5 kB\n"
	got := Meminfo(host, &View{MemTotal: 1 << 40})
	for _, want := range []string{"MemTotal:       1073741824 kB", "DirectMap2M:    123456789 kB", "HugePages_Total:       0", "VeryLongKeyNameHere:       5 kB"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("Meminfo has no %q:\n%s", want, got)
		}
	}
}
