package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

// TestBase checks where levels go on cgroup v2: beside a launcher cgroup
// that cannot hand its controllers down, else below it; v1 never moves.
func TestBase(t *testing.T) {
	mnt := t.TempDir()
	mk := func(p, controllers, subtree string) {
		d := filepath.Join(mnt, p)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "cgroup.controllers"), []byte(controllers+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte(subtree+"\n"), 0o644)
	}
	mk("user.slice/session-2.scope", "cpu memory pids", "")
	mk("svc.service", "cpu memory", "cpu memory")
	mk("bare.scope", "", "")
	mk("half.scope", "cpu memory", "memory")
	for _, c := range []struct {
		h    Hierarchy
		want string
	}{
		{Hierarchy{ID: 0, Path: "/user.slice/session-2.scope", Mount: mnt, Root: "/"}, "/user.slice"},
		{Hierarchy{ID: 0, Path: "/svc.service", Mount: mnt, Root: "/"}, "/svc.service"},
		{Hierarchy{ID: 0, Path: "/bare.scope", Mount: mnt, Root: "/"}, "/bare.scope"},
		{Hierarchy{ID: 0, Path: "/half.scope", Mount: mnt, Root: "/"}, "/"},
		{Hierarchy{ID: 0, Path: "/", Mount: mnt, Root: "/"}, "/"},
		{Hierarchy{ID: 0, Path: "/missing", Mount: mnt, Root: "/"}, "/missing"},
		{Hierarchy{ID: 4, Controllers: []string{"memory"}, Path: "/user.slice/session-2.scope", Mount: mnt, Root: "/"}, "/user.slice/session-2.scope"},
	} {
		if got := Base(c.h); got != c.want {
			t.Errorf("Base(%s %s) = %q, want %q", c.h.Name(), c.h.Path, got, c.want)
		}
	}
}
