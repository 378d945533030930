package mounts

import (
	"strings"
	"testing"
)

// A mount table as the layout is read from it.
func FuzzLayoutFromMounts(f *testing.F) {
	f.Add(hybridMountinfo)
	f.Add("30 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
	f.Add("30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n")
	f.Add("x y z\n")
	f.Fuzz(func(t *testing.T, text string) {
		infos, err := Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		l, err := LayoutFromMounts(infos)
		if err != nil {
			return
		}
		if len(l.FS) == 0 || (l.Kind != Unified && l.Kind != Hybrid && l.Kind != Legacy) {
			t.Errorf("layout %+v", l)
		}
		for _, fs := range l.FS {
			if strings.Contains(fs.Dir, "/") || fs.Dir == ".." || fs.Dir == "." {
				t.Errorf("layout dir %q from %q", fs.Dir, text)
			}
			_ = Controllers(fs.Data)
		}
	})
}
