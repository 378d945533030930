package level

import (
	"os"
	"path/filepath"
	"testing"
)

// liveLimits reads a recorded limit from the level's cgroup, and never a
// name that is a path: a nested record is the level's to write.
func TestLiveLimitsReadsOnlyFileNames(t *testing.T) {
	dir := t.TempDir()
	outer := filepath.Join(dir, "outer")
	os.Mkdir(outer, 0o755)
	os.WriteFile(filepath.Join(outer, "pids.max"), []byte("5\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("host secret"), 0o644)
	got := liveLimits(map[string]string{"pids.max": "1", "../secret.txt": "x"}, map[string]Paths{"pids": {Outer: outer}})
	if got["pids.max"] != "5" || got["../secret.txt"] != "x" {
		t.Errorf("liveLimits = %v, want pids.max 5 read and ../secret.txt as recorded", got)
	}
}
