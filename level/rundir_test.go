package level

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run directory another user could write, or swap out from under us,
// is refused; one below a sticky directory, as /tmp is, is not.
func TestTrustRunDir(t *testing.T) {
	if !initialUserNS() {
		t.Skip("the check is for a caller in the host's user namespace")
	}
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		return d
	}
	open, sticky := mk("open", 0o777), mk("sticky", os.ModeSticky|0o777)
	if err := trustRunDir(filepath.Join(open, "run")); err == nil || !strings.Contains(err.Error(), open+" is writable by others (mode 0777)") {
		t.Errorf("below a directory anyone may write: %v", err)
	}
	if err := trustRunDir(filepath.Join(sticky, "a", "run")); err != nil {
		t.Errorf("below a sticky directory: %v", err)
	}
	if err := trustRunDir(sticky); err == nil || !strings.Contains(err.Error(), sticky+" is writable by others") {
		t.Errorf("a sticky directory anyone may write, as the run directory itself: %v", err)
	}
	if err := os.Symlink(open, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if err := trustRunDir(filepath.Join(base, "link", "run")); err == nil || !strings.Contains(err.Error(), open+" is writable") {
		t.Errorf("through a link to a directory anyone may write: %v", err)
	}
	if os.Geteuid() != 0 {
		return
	}
	theirs := mk("theirs", 0o755)
	if err := os.Chown(theirs, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	// A link of theirs, in a sticky directory, to a directory of ours.
	ours := mk("ours", 0o755)
	if err := os.Symlink(ours, filepath.Join(sticky, "theirs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(sticky, "theirs"), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if err := trustRunDir(filepath.Join(sticky, "theirs", "run")); err == nil || !strings.Contains(err.Error(), "theirs belongs to uid 4242") {
		t.Errorf("through a link of a user's: %v", err)
	}
	if err := trustRunDir(theirs); err == nil || !strings.Contains(err.Error(), theirs+" belongs to uid 4242") || !strings.Contains(err.Error(), "root acts on no level recorded there") {
		t.Errorf("a user's directory, for root: %v", err)
	}
}
