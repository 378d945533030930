package level

import (
	"math"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for every parser of user input and of text read from the
// kernel or from a level. Their f.Add seeds run as plain
// tests; make fuzz runs each for FUZZTIME. A parser may refuse anything,
// with an error, but never panic, and what it accepts holds its promise.

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512M", "1G", "10XB", "1.5K", "0", "-1", "1e9", " 4 KiB ", "9223372036854775807", "T", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 1 {
			t.Errorf("ParseSize(%q) = %d", s, n)
		}
		if err != nil && n != 0 {
			t.Errorf("ParseSize(%q) = %d with %v", s, n, err)
		}
	})
}

func FuzzParseCPUs(f *testing.F) {
	for _, s := range []string{"1", "0.5", "1e9", "NaN", "Inf", "-1", "0.001", "1000000", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCPUs(s)
		if err == nil && (c < 0.01 || c > 1e6 || math.IsNaN(c)) {
			t.Errorf("ParseCPUs(%q) = %g", s, c)
		}
	})
}

func FuzzParseList(f *testing.F) {
	for _, s := range []string{"0-3,6", "0", "3-1", "1,,2", "65536", "0-65535", " 1 ", "-", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParseList(s)
		if err != nil {
			return
		}
		again, err := ParseList(out)
		if err != nil || again != out {
			t.Errorf("ParseList(%q) = %q, which parses to %q, %v", s, out, again, err)
		}
	})
}

func FuzzParseSetting(f *testing.F) {
	for _, s := range []string{"memory.high=1G", "cgroup.procs=1", "cgroup.max.depth=3", "a/b.c=1", "x=1\n2", "tasks=1", "=", "io.max=8:0 rbps=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		file, value, err := ParseSetting(s)
		if err != nil {
			return
		}
		if file == "" || strings.ContainsAny(file, "/\x00") || !strings.Contains(file, ".") || strings.ContainsAny(value, "\n\x00") {
			t.Errorf("ParseSetting(%q) = %q, %q", s, file, value)
		}
		if strings.HasPrefix(file, "cgroup.") && file != "cgroup.max.depth" && file != "cgroup.max.descendants" {
			t.Errorf("ParseSetting(%q) took core file %q", s, file)
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"web", "a/b", ".x", "-x", strings.Repeat("x", 65), "é", "a..b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName(s) != nil {
			return
		}
		if len(s) < 1 || len(s) > 64 || strings.ContainsAny(s, "/\x00 ") || s[0] == '.' || s[0] == '-' || !utf8.ValidString(s) || s == "." || s == ".." {
			t.Errorf("ValidateName accepted %q", s)
		}
	})
}

func FuzzParseIDMap(f *testing.F) {
	for _, s := range []string{"auto", "0:100000:65536", "1:2:3", "0:0:0", "0:-1:5", "0:4294967295:1", "a:b:c", "0:1", "", "100000,0,65536", "1,0,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseIDMap(s, "/nonexistent/subuid")
		if err == nil && (m.Inner != 0 || m.Count < 1 || m.Outer < 0) {
			t.Errorf("ParseIDMap(%q) = %+v", s, m)
		}
	})
}

// Kernel text: /proc/PID/uid_map and /proc/PID/status.
func FuzzProcText(f *testing.F) {
	f.Add("         0     100000      65536\n")
	f.Add("Name:\tsh\nPPid:\t1\nNSpid:\t5\t1\n")
	f.Add("NSpid:\t99999999999999999999\nPPid: x\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range parseIDMaps(s) {
			_ = m.Inner + m.Outer + m.Count
		}
		_ = parseStatus(s)
	})
}

// A record of a nested level, written by that level: decoded, and its
// cgroup paths taken only when plainly below the mount.
func FuzzNestedRecord(f *testing.F) {
	f.Add([]byte(`{"name":"w","outer_cgroups":{"cgroup2":"/sys/fs/cgroup/unified/w"},"inner_cgroups":{"cgroup2":"/sys/fs/cgroup/unified/w/level"},"level_dir":"/run/cl-unshare/levels/w"}`), "w")
	f.Add([]byte(`{"name":"w","outer_cgroups":{"cgroup2":"//sys/fs/cgroup/unified/v"}}`), "w")
	f.Add([]byte(`{"name":"x","cmd":{"pid":-1,"start_time":18446744073709551615}}`), "x")
	f.Add([]byte(`[`), "w")
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		s, err := decodeState(b, name)
		if err != nil {
			return
		}
		if s.Name != name {
			t.Errorf("record of %q names %q", name, s.Name)
		}
		const mnt = "/sys/fs/cgroup/unified"
		for _, p := range s.Outer {
			rel, err := belowMount(p, mnt)
			if err != nil {
				continue
			}
			if rel == "" || path.Join(mnt, rel) != p || strings.Contains("/"+rel+"/", "/../") || strings.HasPrefix(rel, "/") {
				t.Errorf("belowMount(%q) = %q", p, rel)
			}
		}
	})
}
