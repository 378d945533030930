package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// writeTemp creates dir/name (and dir) with content, as cgroupfs would
// already have it.
func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := writeTemp(t, dir, "memory.max", "a much longer old value\n")
	if err := WriteFile(dir, "memory.max", "536870912"); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "536870912" {
		t.Errorf("file holds %q, want exactly the value written (truncated, no newline)", b)
	}
	if err := WriteFile(dir, "memory.max", ""); err != nil {
		t.Fatalf("WriteFile of an empty value: %v", err)
	}
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Errorf("file holds %q after writing \"\"", b)
	}
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()

	// cgroupfs files exist or the controller is missing: never create one.
	err := WriteFile(dir, "pids.max", "42")
	p := filepath.Join(dir, "pids.max")
	if err == nil {
		t.Fatal("WriteFile created a missing file")
	}
	if _, serr := os.Stat(p); serr == nil {
		t.Error("WriteFile left a new file behind")
	}
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error %v does not wrap ENOENT", err)
	}
	want := `write "42" to ` + p + `: no such file or directory`
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	// A directory where the file should be: EISDIR, path named once.
	sub := filepath.Join(dir, "cgroup.procs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	err = WriteFile(dir, "cgroup.procs", "1234")
	if err == nil || !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("err = %v, want EISDIR", err)
	}
	if strings.Count(err.Error(), sub) != 1 || !strings.Contains(err.Error(), `"1234"`) {
		t.Errorf("error %q should name the path once and the value", err)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	writeTemp(t, dir, "pids.max", "  max \n")
	if v, err := ReadFile(dir, "pids.max"); err != nil || v != "max" {
		t.Errorf("ReadFile = %q, %v; want \"max\"", v, err)
	}
	writeTemp(t, dir, "empty", "\n")
	if v, err := ReadFile(dir, "empty"); err != nil || v != "" {
		t.Errorf("ReadFile(empty) = %q, %v", v, err)
	}
	if _, err := ReadFile(dir, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing) err = %v, want ErrNotExist", err)
	}
}

func TestFields(t *testing.T) {
	dir := t.TempDir()
	writeTemp(t, dir, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	got, err := Fields(dir, "cgroup.controllers")
	want := []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Fields = %q, %v; want %q", got, err, want)
	}
	writeTemp(t, dir, "cgroup.subtree_control", "")
	got, err = Fields(dir, "cgroup.subtree_control")
	if err != nil || len(got) != 0 {
		t.Errorf("Fields of an empty file = %q, %v", got, err)
	}
	if _, err := Fields(dir, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Fields(missing) err = %v", err)
	}
}

func TestKeyValue(t *testing.T) {
	dir := t.TempDir()
	writeTemp(t, dir, "cgroup.events", "populated 1\nfrozen 0\n")
	writeTemp(t, dir, "memory.stat", "anon 4096\nfile 8192\nnote a b c\n")
	for _, c := range []struct{ file, key, want string }{
		{"cgroup.events", "populated", "1"},
		{"cgroup.events", "frozen", "0"},
		{"memory.stat", "file", "8192"},
		{"memory.stat", "note", "a b c"},
	} {
		if v, err := KeyValue(dir, c.file, c.key); err != nil || v != c.want {
			t.Errorf("KeyValue(%s, %s) = %q, %v; want %q", c.file, c.key, v, err, c.want)
		}
	}
	for _, key := range []string{"pop", "populated 1", "", "1"} {
		v, err := KeyValue(dir, "cgroup.events", key)
		if err == nil {
			t.Errorf("KeyValue(%q) = %q, want an error", key, v)
			continue
		}
		if !strings.Contains(err.Error(), filepath.Join(dir, "cgroup.events")) || !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Errorf("KeyValue(%q) error %q should name the file and the key", key, err)
		}
	}
	if _, err := KeyValue(dir, "missing", "populated"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("KeyValue(missing file) err = %v, want ErrNotExist", err)
	}
}

func TestProcs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "web")
	writeTemp(t, root, "cgroup.procs", "100\n101\n")
	writeTemp(t, filepath.Join(root, "level"), "cgroup.procs", "200\n")
	writeTemp(t, filepath.Join(root, "level", "b"), "cgroup.procs", "")
	writeTemp(t, filepath.Join(root, "level", "b", "c"), "cgroup.procs", "300\n301\n")
	writeTemp(t, filepath.Join(root, "z"), "cgroup.procs", "junk\n400\n")
	writeTemp(t, root, "notes.txt", "999\n")
	writeTemp(t, filepath.Join(root, "level", "b", "c"), "tasks", "998\n")
	if err := os.MkdirAll(filepath.Join(root, "nofile", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTemp(t, filepath.Join(root, "nofile", "deeper"), "cgroup.procs", "500")

	pids, err := Procs(root)
	if err != nil {
		t.Fatalf("Procs: %v", err)
	}
	sort.Ints(pids)
	if want := []int{100, 101, 200, 300, 301, 400, 500}; !reflect.DeepEqual(pids, want) {
		t.Errorf("Procs = %v, want %v", pids, want)
	}

	pids, err = Procs(filepath.Join(root, "level", "b"))
	sort.Ints(pids)
	if err != nil || !reflect.DeepEqual(pids, []int{300, 301}) {
		t.Errorf("Procs(level/b) = %v, %v; want [300 301]", pids, err)
	}

	pids, err = Procs(filepath.Join(root, "gone"))
	if err != nil || len(pids) != 0 {
		t.Errorf("Procs of a removed cgroup = %v, %v; want nothing", pids, err)
	}

	// An unreadable cgroup.procs is an error, not an empty cgroup.
	bad := filepath.Join(t.TempDir(), "x")
	if err := os.MkdirAll(filepath.Join(bad, "cgroup.procs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Procs(bad); err == nil {
		t.Error("Procs ignored a cgroup.procs it could not read")
	}
}

// TestCreateRemoveTempTree runs Create and Remove on a v1 hierarchy
// "mounted" at a temporary directory: plain mkdir and rmdir.
func TestCreateRemoveTempTree(t *testing.T) {
	mnt := t.TempDir()
	own := filepath.Join(mnt, "user.slice") // the launcher's own cgroup
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	h := Hierarchy{ID: 4, Controllers: []string{"memory"}, Path: "/user.slice", Mount: mnt, Root: "/"}
	l, err := Create([]Hierarchy{h}, "ci/jobs", "web", nil, 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	d := l.Dirs[0]
	if want := filepath.Join(own, "ci/jobs"); d.Parent != want {
		t.Errorf("Parent = %q, want %q", d.Parent, want)
	}
	if want := filepath.Join(own, "ci/jobs/web"); d.Outer != want {
		t.Errorf("Outer = %q, want %q", d.Outer, want)
	}
	if want := filepath.Join(own, "ci/jobs/web", InnerName); d.Inner != want {
		t.Errorf("Inner = %q, want %q", d.Inner, want)
	}
	if st, err := os.Stat(d.Inner); err != nil || !st.IsDir() {
		t.Fatalf("inner cgroup not made: %v", err)
	}
	if l.V2() != nil {
		t.Error("V2() of a v1-only level is not nil")
	}
	if _, err := Create([]Hierarchy{h}, "ci/jobs", "web", nil, 0); err == nil {
		t.Error("a second Create of the same level succeeded")
	} else {
		var ee *ExistsError
		if !errors.As(err, &ee) || ee.Path != d.Outer {
			t.Errorf("second Create: err = %v, want *ExistsError for %s", err, d.Outer)
		}
	}
	if _, err := os.Stat(d.Inner); err != nil {
		t.Errorf("the failed second Create removed the first level: %v", err)
	}
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	ents, _ := os.ReadDir(own)
	if len(ents) != 0 {
		t.Errorf("Remove left %v in the launcher's cgroup", ents)
	}
	if _, err := os.Stat(own); err != nil {
		t.Errorf("Remove removed the launcher's own cgroup: %v", err)
	}
	if err := l.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestRemoveKeepsOthersParents(t *testing.T) {
	mnt := t.TempDir()
	theirs := filepath.Join(mnt, "ci") // made by someone else
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	h := Hierarchy{ID: 5, Controllers: []string{"pids"}, Path: "/", Mount: mnt, Root: "/"}
	a, err := Create([]Hierarchy{h}, "ci/jobs", "a", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create([]Hierarchy{h}, "ci/jobs", "b", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// a made ci/jobs, but b is still in it.
	if err := a.Remove(); err != nil {
		t.Fatalf("Remove a: %v", err)
	}
	if _, err := os.Stat(filepath.Join(theirs, "jobs", "b", InnerName)); err != nil {
		t.Fatalf("removing level a took level b with it: %v", err)
	}
	if _, err := os.Stat(filepath.Join(theirs, "jobs", "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("level a is still there: %v", err)
	}
	if err := b.Remove(); err != nil {
		t.Fatalf("Remove b: %v", err)
	}
	if _, err := os.Stat(filepath.Join(theirs, "jobs", "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("level b is still there: %v", err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("a parent cgroup cl-unshare did not make was removed: %v", err)
	}
}

func TestCreateUndoesOnError(t *testing.T) {
	mnt := t.TempDir()
	if err := os.Mkdir(filepath.Join(mnt, "user.slice"), 0o755); err != nil {
		t.Fatal(err)
	}
	hs := []Hierarchy{
		{ID: 1, Controllers: []string{"pids"}, Path: "/user.slice", Mount: filepath.Join(mnt), Root: "/"},
	}
	// The limit's file does not exist here, as with a missing controller.
	writes := []Write{{Hierarchy: 0, Controller: "pids", File: "pids.max", Value: "9", Field: "Limits.PidsMax"}}
	_, err := Create(hs, "p", "web", writes, 0)
	if err == nil {
		t.Fatal("Create succeeded though pids.max could not be written")
	}
	if !strings.HasPrefix(err.Error(), "Limits.PidsMax: pids.max does not exist here") || !strings.Contains(err.Error(), `write "9"`) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %q, want it to name the flag, value and cause", err)
	}
	ents, _ := os.ReadDir(filepath.Join(mnt, "user.slice"))
	if len(ents) != 0 {
		t.Errorf("failed Create left %v behind", ents)
	}
	if _, err := os.Stat(filepath.Join(mnt, "user.slice")); err != nil {
		t.Errorf("failed Create removed a directory it did not make: %v", err)
	}
}
