package level

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	valid := []string{
		"a",
		"Z",
		"0",
		"web",
		"ci-42",
		"level-0123456789",
		"a.b_c-d",
		"A1.2",
		"x" + strings.Repeat("y", 63), // 64 characters
		strings.Repeat("9", 64),
	}
	for _, name := range valid {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
	}
	invalid := []string{
		"",
		"-a",
		".a",
		"_a",
		".",
		"..",
		"a b",
		" a",
		"a ",
		"a/b",
		"/a",
		"a\n",
		"a\x00",
		"a:b",
		"a*",
		"é",
		"x" + strings.Repeat("y", 64), // 65 characters
	}
	for _, name := range invalid {
		err := ValidateName(name)
		if err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", name)
			continue
		}
		if !strings.Contains(err.Error(), "invalid name") {
			t.Errorf("ValidateName(%q) = %q, want it to say \"invalid name\"", name, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	const (
		k  = int64(1) << 10
		m  = int64(1) << 20
		g  = int64(1) << 30
		t4 = int64(1) << 40
	)
	good := []struct {
		in   string
		want int64
	}{
		{"512", 512},
		{"1", 1},
		{"1K", k},
		{"1k", k},
		{"512M", 512 * m},
		{"512m", 512 * m},
		{"1.5G", 3 * g / 2},
		{"2T", 2 * t4},
		{"10kib", 10 * k},
		{"10KiB", 10 * k},
		{"10MiB", 10 * m},
		{"10MB", 10 * m}, // accepted as binary
		{"10kb", 10 * k},
		{"10B", 10},
		{"0.5K", 512},
		{" 64M ", 64 * m},
		{"1024G", 1024 * g},
	}
	for _, c := range good {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, nil", c.in, got, err, c.want)
		}
	}
	bad := []string{
		"10XB",
		"",
		" ",
		"-5M",
		"+5M",
		"0",
		"0M",
		"0.0001",
		"M",
		"KiB",
		"B",
		"1e3",
		"1E3",
		"0x10",
		"0X10",
		"1_000",
		"abc",
		"1.2.3",
		"5 M",
		"NaN",
		"Inf",
		"inf",
		"8E",
		"99999999T", // overflows int64
	}
	for _, in := range bad {
		got, err := ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, nil; want an error", in, got)
			continue
		}
		if got != 0 {
			t.Errorf("ParseSize(%q) returned %d with its error, want 0", in, got)
		}
	}
	_, err := ParseSize("10XB")
	const want = `invalid size "10XB" (use a number with K, M, G or T)`
	if err == nil || err.Error() != want {
		t.Errorf("ParseSize(\"10XB\") error = %v, want %q", err, want)
	}
}

func TestParseCPUs(t *testing.T) {
	good := []struct {
		in   string
		want float64
	}{
		{"1", 1},
		{"0.5", 0.5},
		{"1.5", 1.5},
		{"2.25", 2.25},
		{"0.01", 0.01},
		{" 4 ", 4},
		{"64", 64},
	}
	for _, c := range good {
		got, err := ParseCPUs(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseCPUs(%q) = %g, %v; want %g, nil", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "0", "0.001", "-1", "-0.5", "a", "1.5x", "NaN", "Inf", "1e7", "1,5"} {
		got, err := ParseCPUs(in)
		if err == nil {
			t.Errorf("ParseCPUs(%q) = %g, nil; want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), "invalid CPU quota") || !strings.Contains(err.Error(), "\""+in+"\"") {
			t.Errorf("ParseCPUs(%q) error %q does not name the value", in, err)
		}
	}
}

func TestParseList(t *testing.T) {
	good := []struct{ in, want string }{
		{"0", "0"},
		{"0-3,6", "0-3,6"},
		{"0-3", "0-3"},
		{"1,2,3", "1,2,3"},
		{"2-2", "2-2"},
		{"00-03,06", "0-3,6"}, // normalized
		{" 0-1 ", "0-1"},
		{"0-1,4-7,12", "0-1,4-7,12"},
	}
	for _, c := range good {
		got, err := ParseList(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseList(%q) = %q, %v; want %q, nil", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"3-1", "", " ", "a", "1,,2", ",1", "1,", "-1", "1-", "0-3-5", "+1", "1, 2", "1 2", "0x1", "1.5", "70000"} {
		got, err := ParseList(in)
		if err == nil {
			t.Errorf("ParseList(%q) = %q, nil; want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), "invalid list") {
			t.Errorf("ParseList(%q) error = %q, want it to say \"invalid list\"", in, err)
		}
	}
}

func TestParseSetting(t *testing.T) {
	good := []struct{ in, file, value string }{
		{"memory.high=1G", "memory.high", "1G"},
		{"pids.max=max", "pids.max", "max"},
		{"cgroup.max.depth=3", "cgroup.max.depth", "3"},
		{"cgroup.max.descendants=100", "cgroup.max.descendants", "100"},
		{"io.weight=default 50", "io.weight", "default 50"},
		{"cpuset.cpus=0-3,6", "cpuset.cpus", "0-3,6"},
		{"rdma.max=mlx4_0 hca_handle=2", "rdma.max", "mlx4_0 hca_handle=2"}, // only the first '=' splits
		{"memory.high=", "memory.high", ""},
	}
	for _, c := range good {
		file, value, err := ParseSetting(c.in)
		if err != nil || file != c.file || value != c.value {
			t.Errorf("ParseSetting(%q) = %q, %q, %v; want %q, %q, nil", c.in, file, value, err, c.file, c.value)
		}
	}
	bad := []struct{ in, msg string }{
		{"memory.high", "invalid setting"},
		{"", "invalid setting"},
		{"=1G", "invalid setting"},
		{"memoryhigh=1", "invalid controller file"},
		{".high=1", "invalid controller file"},
		{"../../x.y=1", "invalid controller file"},
		{"a/b.c=1", "invalid controller file"},
		{"a.b\x00=1", "invalid controller file"},
		{"memory.high=1\n2", "it must be one line"},
		{"memory.high=1\x00", "it must be one line"},
	}
	// Core files: cgroup.procs=PID would move any process into the level.
	for _, f := range []string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.type", "cgroup.kill",
		"cgroup.freeze", "cgroup.events", "cgroup.pressure", "cgroup.clone_children", "cgroup.sane_behavior", "cgroup.stat"} {
		bad = append(bad, struct{ in, msg string }{f + "=1", "is a cgroup core file, not a limit"})
	}
	for _, f := range []string{"tasks", "notify_on_release", "release_agent"} {
		bad = append(bad, struct{ in, msg string }{f + "=1", "invalid controller file"})
	}
	for _, c := range bad {
		file, value, err := ParseSetting(c.in)
		if err == nil {
			t.Errorf("ParseSetting(%q) = %q, %q, nil; want an error", c.in, file, value)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseSetting(%q) error = %q, want it to contain %q", c.in, err, c.msg)
		}
		if file != "" || value != "" {
			t.Errorf("ParseSetting(%q) returned %q, %q with its error", c.in, file, value)
		}
	}
}
