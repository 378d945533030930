package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// What a level may plant in its run directory: links out, a FIFO (an
// open of it would block), a file too large, a path up and out.
func TestPlanted(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.json"), []byte(`{"x":1}`), 0o600)
	os.Mkdir(filepath.Join(root, "state"), 0o755)
	os.WriteFile(filepath.Join(root, "state", "ok.json"), []byte(`{}`), 0o644)
	os.Symlink(filepath.Join(outside, "secret.json"), filepath.Join(root, "state", "link.json"))
	os.Symlink(outside, filepath.Join(root, "linkdir"))
	unix.Mkfifo(filepath.Join(root, "state", "fifo.json"), 0o644)
	os.WriteFile(filepath.Join(root, "state", "big.json"), make([]byte, 2000), 0o644)
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sd, err := Dir(fd, "state", true)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sd)
	if b, err := ReadFile(sd, "ok.json", 1000, 0); err != nil || string(b) != "{}" {
		t.Errorf("ok.json: %q, %v", b, err)
	}
	for name, want := range map[string]error{"link.json": unix.ELOOP, "fifo.json": ErrNotRegular, "../state/ok.json": unix.EXDEV} {
		if _, err := ReadFile(sd, name, 1000, 0); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	if _, err := ReadFile(sd, "big.json", 1000, 0); err == nil {
		t.Error("big.json: read past the size bound")
	}
	if _, err := ReadFile(sd, "ok.json", 1000, unix.CGROUP2_SUPER_MAGIC); !errors.Is(err, ErrNotRegular) {
		t.Errorf("ok.json on the wrong filesystem type: %v", err)
	}
	if _, err := Dir(fd, "linkdir", false); !errors.Is(err, unix.ELOOP) {
		t.Errorf("linkdir: %v, want ELOOP", err)
	}
	names, err := Names(fd, "state", 2)
	if err != nil || len(names) != 2 {
		t.Errorf("Names with a bound of 2: %v, %v", names, err)
	}
}
