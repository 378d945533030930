package level

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseIDMap(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "subuid")
	os.WriteFile(sub, []byte("alice:100000:65536\nroot:200000:65536\n"), 0o644)
	none := filepath.Join(dir, "missing")
	for _, c := range []struct {
		in, file string
		want     IDMap
		err      string
	}{
		{"auto", sub, IDMap{0, 200000, 65536}, ""},
		{"auto", none, IDMap{0, 100000, 65536}, ""},
		{"0:200000:1000", sub, IDMap{0, 200000, 1000}, ""},
		{"0:5000:10", none, IDMap{0, 5000, 10}, ""},
		{"0:100000:65536", sub, IDMap{}, "not root's subordinate range 200000-265535"},
		{"1:200000:10", sub, IDMap{}, "leaves root (id 0) unmapped"},
		{"200000,0,1000", sub, IDMap{0, 200000, 1000}, ""},
		{"5000,0,10", none, IDMap{0, 5000, 10}, ""},
		{"200000,1,10", sub, IDMap{}, "leaves root (id 0) unmapped"},
		{"0:200000,5", sub, IDMap{}, "invalid map"},
		{"200000,0", sub, IDMap{}, "invalid map"},
		{"0:200000", sub, IDMap{}, "invalid map"},
		{"0:x:1", sub, IDMap{}, "invalid map"},
		{"0:200000:0", sub, IDMap{}, "invalid map"},
		{"-1:200000:5", sub, IDMap{}, "invalid map"},
	} {
		got, err := ParseIDMap(c.in, c.file)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: error %v, want one with %q", c.in, err, c.err)
		}
	}
}

// A nested level's launcher runs inside a user namespace: the host ids of
// its map must be ids that namespace has.
func TestMappedHere(t *testing.T) {
	host := "         0          0 4294967295\n"
	level := "         0     100000      65536\n"
	if err := mappedHere(IDMap{0, 100000, 65536}, host, "uid_map"); err != nil {
		t.Errorf("host namespace: %v", err)
	}
	if err := mappedHere(IDMap{0, 1000, 1000}, level, "uid_map"); err != nil {
		t.Errorf("inside a level, 1000-1999: %v", err)
	}
	err := mappedHere(IDMap{0, 100000, 65536}, level, "/proc/self/uid_map")
	if err == nil || !strings.Contains(err.Error(), "ids 100000-165535 are not mapped") ||
		!strings.Contains(err.Error(), "it has 0-65535") || !strings.Contains(err.Error(), "such as 0:0:65536") {
		t.Errorf("inside a level, 100000-165535: %v", err)
	}
	if err := mappedHere(IDMap{0, 65000, 1000}, level, "uid_map"); err == nil {
		t.Errorf("a range crossing the map's end was accepted")
	}
	if err := mappedHere(IDMap{0, 0, 1}, "", "uid_map"); err == nil || !strings.Contains(err.Error(), "it has none") {
		t.Errorf("an empty map: %v", err)
	}
}

func TestParseIDMaps(t *testing.T) {
	got := parseIDMaps("         0     100000      65536\n     65536    1000000         10\n") // as the kernel writes them
	want := []IDMap{{0, 100000, 65536}, {65536, 1000000, 10}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("parseIDMaps = %+v, want %+v", got, want)
	}
}

// A line of /etc/subuid whose numbers do not parse (which the library
// reads as 0) never maps the host's root into a level: it is skipped.
func TestSubRangeSkipsMalformed(t *testing.T) {
	dir := t.TempDir()
	for text, want := range map[string]IDMap{
		"root:x:65536\nroot:300000:100\n": {0, 300000, 100},
		"root:0:65536\n":                  defaultRange,
		"root:300000:y\n":                 defaultRange,
		"root:300000:65536:extra\n":       {0, 300000, 65536},
	} {
		sub := filepath.Join(dir, "subuid")
		if err := os.WriteFile(sub, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := ParseIDMap("auto", sub); err != nil || got != want {
			t.Errorf("%q: auto = %+v, %v; want %+v", text, got, err, want)
		}
	}
}
