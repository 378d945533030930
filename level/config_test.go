package level

import (
	"errors"
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
)

func validConfig() Config {
	return Config{Name: "web", Argv: []string{"true"}}
}

// fieldError checks that err is a *FieldError for field, and that its
// message names no command-line flag.
func fieldError(t *testing.T, err error, field string) *FieldError {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v (%T), want a *FieldError for %s", err, err, field)
	}
	if fe.Field != field {
		t.Fatalf("FieldError.Field = %q, want %q (error %q)", fe.Field, field, err)
	}
	if !strings.HasPrefix(err.Error(), field+": ") {
		t.Errorf("error %q does not start with %q", err, field+": ")
	}
	if strings.Contains(err.Error(), "--") {
		t.Errorf("error %q names a flag", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("FieldError %q does not unwrap to its cause", err)
	}
	return fe
}

func TestValidateDefaults(t *testing.T) {
	c := Config{Argv: []string{"sh"}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if c.Name == "" {
		t.Fatal("Validate() left Name empty, want a generated name")
	}
	if err := ValidateName(c.Name); err != nil {
		t.Errorf("generated name %q is invalid: %v", c.Name, err)
	}
	if !strings.HasPrefix(c.Name, "level-") {
		t.Errorf("generated name %q does not start with level-", c.Name)
	}
	if c.RunDir != DefaultRunDir {
		t.Errorf("RunDir = %q, want %q", c.RunDir, DefaultRunDir)
	}
	if c.CgroupParent != "" {
		t.Errorf("CgroupParent = %q, want \"\"", c.CgroupParent)
	}

	// Two generated names differ.
	d := Config{Argv: []string{"sh"}}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Name == c.Name {
		t.Errorf("two generated names are both %q", c.Name)
	}
}

func TestValidateKeepsGivenValues(t *testing.T) {
	c := Config{Name: "ci-42", Argv: []string{"make", "-j4"}, RunDir: "/tmp/levels/", CgroupParent: "ci/jobs"}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if c.Name != "ci-42" {
		t.Errorf("Name = %q, want ci-42", c.Name)
	}
	if c.RunDir != "/tmp/levels" {
		t.Errorf("RunDir = %q, want /tmp/levels (cleaned)", c.RunDir)
	}
	if c.CgroupParent != "ci/jobs" {
		t.Errorf("CgroupParent = %q, want ci/jobs", c.CgroupParent)
	}
}

func TestConfigValidateName(t *testing.T) {
	for _, name := range []string{"-x", "a/b", strings.Repeat("a", 65), "."} {
		c := validConfig()
		c.Name = name
		fieldError(t, c.Validate(), "Config.Name")
	}
}

func TestValidateCommand(t *testing.T) {
	for _, argv := range [][]string{nil, {}, {""}, {"", "x"}} {
		c := validConfig()
		c.Argv = argv
		fieldError(t, c.Validate(), "Config.Argv")
	}
}

func TestValidateRunDir(t *testing.T) {
	for _, dir := range []string{"run", "./run", "run/cl-unshare", "../x"} {
		c := validConfig()
		c.RunDir = dir
		err := c.Validate()
		fieldError(t, err, "Config.RunDir")
		if !strings.Contains(err.Error(), dir) {
			t.Errorf("error %q does not name %q", err, dir)
		}
	}
	c := validConfig()
	c.RunDir = "/run//x/../cl-unshare/"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.RunDir != "/run/cl-unshare" {
		t.Errorf("RunDir = %q, want /run/cl-unshare", c.RunDir)
	}
}

func TestValidateCgroupParent(t *testing.T) {
	for _, p := range []string{"..", "../x", "a/../../b", "/abs", "/", "x/level", "level", "level/x", "./level", "a/b/../level"} {
		c := validConfig()
		c.CgroupParent = p
		err := c.Validate()
		if err == nil {
			t.Errorf("CgroupParent %q accepted as %q, want an error", p, c.CgroupParent)
			continue
		}
		fe := fieldError(t, err, "Config.CgroupParent")
		if !strings.Contains(fe.Err.Error(), p) {
			t.Errorf("CgroupParent %q: error %q does not name it", p, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{".", ""},
		{"./", ""},
		{"a/b/", "a/b"},
		{"a//b", "a/b"},
		{"./a/./b", "a/b"},
		{"a/../b", "b"},
		{"a/..", ""},
		{"levels", "levels"},
		{"my.level", "my.level"},
		{"..a", "..a"},
	} {
		cfg := validConfig()
		cfg.CgroupParent = c.in
		if err := cfg.Validate(); err != nil {
			t.Errorf("CgroupParent %q: %v", c.in, err)
			continue
		}
		if cfg.CgroupParent != c.want {
			t.Errorf("CgroupParent %q = %q, want %q", c.in, cfg.CgroupParent, c.want)
		}
	}
}

func TestValidateLimits(t *testing.T) {
	bad := []struct {
		field string
		l     cgroup.Limits
	}{
		{"Limits.Memory", cgroup.Limits{Memory: -1}},
		{"Limits.CPUs", cgroup.Limits{CPUs: -0.5}},
		{"Limits.CPUWeight", cgroup.Limits{CPUWeight: 10001}},
		{"Limits.PidsMax", cgroup.Limits{PidsMax: -1}},
		{"Limits.CpusetCPUs", cgroup.Limits{CpusetCPUs: "3-1"}},
		{"Limits.CpusetMems", cgroup.Limits{CpusetMems: "a"}},
		{"Limits.Set", cgroup.Limits{Set: []cgroup.Setting{{File: "nodot", Value: "1"}}}},
		{"Limits.Set", cgroup.Limits{Set: []cgroup.Setting{{File: "memory.high", Value: "1\n2"}}}},
	}
	for _, b := range bad {
		c := validConfig()
		c.Limits = b.l
		fieldError(t, c.Validate(), b.field)
	}

	c := validConfig()
	c.Limits = cgroup.Limits{Memory: 1 << 20, CPUs: 0.5, CPUWeight: 10000, PidsMax: 5,
		CpusetCPUs: "00-01,03", CpusetMems: "0",
		Set: []cgroup.Setting{{File: "memory.high", Value: "1G"}}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if c.Limits.CpusetCPUs != "0-1,3" {
		t.Errorf("CpusetCPUs = %q, want it normalized to 0-1,3", c.Limits.CpusetCPUs)
	}
	for _, w := range []uint64{0, 1, 10000} {
		c := validConfig()
		c.Limits.CPUWeight = w
		if err := c.Validate(); err != nil {
			t.Errorf("CPUWeight %d: %v", w, err)
		}
	}
}
