package failpoint

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestAt(t *testing.T) {
	t.Setenv(Env, "")
	if err := At("spawn"); err != nil {
		t.Errorf("FailPoint with %s empty = %v", Env, err)
	}
	if err := At(""); err != nil {
		t.Errorf("At(\"\") with %s empty = %v", Env, err)
	}

	t.Setenv(Env, "spawn")
	err := At("spawn")
	if err == nil {
		t.Fatal("At(spawn) = nil with the failure injected")
	}
	if !errors.Is(err, syscall.ECANCELED) {
		t.Errorf("injected error %v does not wrap ECANCELED", err)
	}
	if want := "failure injected by " + Env + "=spawn"; !strings.Contains(err.Error(), want) {
		t.Errorf("injected error %q does not say %q", err, want)
	}
	for _, step := range []string{"cgroups", "run-dir", "Spawn", "spawn ", "", "exec"} {
		if err := At(step); err != nil {
			t.Errorf("At(%q) with %s=spawn = %v", step, Env, err)
		}
	}

	t.Setenv(Env, "cgroup mounts")
	if err := At("cgroup mounts"); err == nil {
		t.Errorf("At(%q) not injected", "cgroup mounts")
	}
	if err := At("crash:" + "cgroup mounts"); err != nil {
		t.Errorf("At(crash:...) = %v", err)
	}
}
