package resident

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// Trim must take the binary's read-only pages out of the process's
// resident set, and leave it running: the code it drops is needed again
// at once, to return and to go on testing.
func TestTrimDropsReadOnlyPages(t *testing.T) {
	before := rssFileKB(t)
	Trim()
	after := rssFileKB(t)
	if after >= before {
		t.Errorf("RssFile %d kB before Trim, %d kB after", before, after)
	}
	// Data the binary wrote must be untouched.
	if s := strings.Repeat("x", 3); s != "xxx" || marker != 42 {
		t.Errorf("state lost: %q %d", s, marker)
	}
}

var marker = 41

func init() { marker++ }
