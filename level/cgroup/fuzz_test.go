package cgroup

import (
	"strings"
	"testing"

	"github.com/cl-unshare/cl-unshare/mounts"
)

// /proc/self/cgroup and mountinfo, as Discover reads them.
func FuzzDiscover(f *testing.F) {
	f.Add("0::/user.slice\n4:memory:/x\n", hybridMountinfo)
	f.Add("1:name=systemd:/../..\n", legacyMountinfo)
	f.Add("x:y\n", "garbage")
	f.Fuzz(func(t *testing.T, procCgroup, mountinfo string) {
		ms, err := ParseProcCgroup(strings.NewReader(procCgroup))
		if err == nil {
			for _, m := range ms {
				if !strings.HasPrefix(m.Path, "/") || m.ID < 0 {
					t.Errorf("ParseProcCgroup(%q) gave %+v", procCgroup, m)
				}
			}
		}
		infos, err := mounts.Parse(strings.NewReader(mountinfo))
		if err != nil {
			return
		}
		hs, err := Discover(strings.NewReader(procCgroup), infos)
		if err != nil {
			return
		}
		for _, h := range hs {
			if !strings.HasPrefix(h.Mount, "/") || h.Path == "/.." || strings.HasPrefix(h.Path, "/../") {
				t.Errorf("Discover gave %+v", h)
			}
			_ = h.Dir(h.Path)
		}
	})
}
