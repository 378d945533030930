package level

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/user"
	"github.com/moby/sys/userns"
)

// IDMap maps Count ids from Inner (in the level's user namespace) to
// Outer (on the host).
type IDMap struct {
	Inner int `json:"inner"`
	Outer int `json:"outer"`
	Count int `json:"count"`
}

// defaultRange is the host range a level's ids map to when /etc/subuid
// has none for root: the first range useradd hands out.
var defaultRange = IDMap{Inner: 0, Outer: 100000, Count: 65536}

// ParseIDMap parses "INNER:OUTER:COUNT", unshare's "OUTER,INNER,COUNT"
// (--map-users=100000,0,65536: the other order, and commas, so neither
// can be read as the other), or "auto" for root's range in /etc/subuid
// (or /etc/subgid), else 100000:65536, mapped from 0.
func ParseIDMap(s, subFile string) (IDMap, error) {
	if s == "auto" && NeedsRootless() {
		return autoRootless(subFile)
	}
	if s == "auto" {
		if r, ok := subRange(subFile); ok {
			return r, nil
		}
		return defaultRange, nil
	}
	sep, unshareOrder := ":", strings.Contains(s, ",")
	if unshareOrder {
		sep = ","
	}
	f := strings.Split(s, sep)
	bad := fmt.Errorf("invalid map %q (use INNER:OUTER:COUNT, such as 0:100000:65536, unshare's OUTER,INNER,COUNT, or auto)", s)
	if len(f) != 3 {
		return IDMap{}, bad
	}
	if unshareOrder {
		f[0], f[1] = f[1], f[0]
	}
	var n [3]int
	for i := range f {
		v, err := strconv.Atoi(f[i])
		if err != nil || v < 0 || v > 1<<32-2 {
			return IDMap{}, bad
		}
		n[i] = v
	}
	m := IDMap{n[0], n[1], n[2]}
	if m.Count == 0 {
		return IDMap{}, bad
	}
	if m.Inner > 0 {
		return IDMap{}, fmt.Errorf("map %q leaves root (id 0) unmapped: the level could not set itself up", s)
	}
	// /etc/subuid speaks of the host's ids; inside a user namespace (a
	// nested level) Validate checks the range against its map instead.
	if r, ok := subRange(subFile); ok && initialUserNS() && !NeedsRootless() && (m.Outer < r.Outer || m.Outer+m.Count > r.Outer+r.Count) {
		return IDMap{}, fmt.Errorf("map %q: host ids %d-%d are not root's subordinate range %d-%d in %s", s, m.Outer, m.Outer+m.Count-1, r.Outer, r.Outer+r.Count-1, subFile)
	}
	return m, nil
}

// initialUserNS reports whether this process is in the host's user
// namespace, which maps every id to itself. Without a map to read it
// cannot tell, and says no (the subordinate-range check is then left to
// Validate's check against the map).
func initialUserNS() bool {
	if _, err := os.Stat("/proc/self/uid_map"); err != nil {
		return false
	}
	return !userns.RunningInUserNS()
}

// parseIDMaps parses the text of a /proc/PID/uid_map or gid_map: lines of
// the id inside that process's namespace (Inner), the id in the reader's
// (Outer), and a count. The library reads a number it cannot parse as 0:
// an entry of no ids is dropped, and one the kernel would not have
// written makes no map at all.
func parseIDMaps(text string) []IDMap {
	ms, err := user.ParseIDMap(strings.NewReader(text))
	if err != nil {
		return nil
	}
	var out []IDMap
	for _, m := range ms {
		if m.ID >= 0 && m.ParentID >= 0 && m.Count > 0 && m.ID+m.Count <= 1<<32 && m.ParentID+m.Count <= 1<<32 {
			out = append(out, IDMap{Inner: int(m.ID), Outer: int(m.ParentID), Count: int(m.Count)})
		}
	}
	return out
}

// subRange reads root's first range from /etc/subuid or /etc/subgid. The
// library reads a number it cannot parse as 0, so a range that starts at
// 0 (it would map the host's root into the level) or holds no ids is
// taken for a malformed line and skipped, as useradd never writes one.
func subRange(path string) (IDMap, bool) {
	ids, err := user.ParseSubIDFileFilter(path, func(s user.SubID) bool { return s.Name == "root" || s.Name == "0" })
	for _, s := range ids {
		if err == nil && s.SubID > 0 && s.Count > 0 && s.SubID+s.Count <= 1<<32 {
			return IDMap{Inner: 0, Outer: int(s.SubID), Count: int(s.Count)}, true
		}
	}
	return IDMap{}, false
}

var errNoUserNS = errors.New("needs Config.User")

// mappedHere checks that m's outer ids exist in this process's user
// namespace, whose map (the text of /proc/self/uid_map, from file) lists
// them in its first column. Only a nested level can miss: the host's
// namespace maps every id.
func mappedHere(m IDMap, mapText, file string) error {
	var have []string
	hint := ""
	// Our own map: our ids are its Inner column, extents that follow
	// each other one run (a rootless launcher's: its user, then the
	// user's range).
	for _, e := range runs(parseIDMaps(mapText)) {
		if m.Outer >= e.Inner && m.Outer+m.Count <= e.Inner+e.Count {
			return nil
		}
		have = append(have, fmt.Sprintf("%d-%d", e.Inner, e.Inner+e.Count-1))
		if hint == "" {
			hint = fmt.Sprintf(", such as 0:%d:%d", e.Inner, e.Count)
		}
	}
	if len(have) == 0 {
		have = []string{"none"}
	}
	return fmt.Errorf("ids %d-%d are not mapped in this user namespace (it has %s, as %s says): choose a range inside it%s",
		m.Outer, m.Outer+m.Count-1, strings.Join(have, ", "), file, hint)
}

// runs joins the extents of a map whose inner ids follow each other.
func runs(ms []IDMap) []IDMap {
	slices.SortFunc(ms, func(a, b IDMap) int { return a.Inner - b.Inner })
	var out []IDMap
	for _, m := range ms {
		if n := len(out); n > 0 && out[n-1].Inner+out[n-1].Count == m.Inner {
			out[n-1].Count += m.Count
			continue
		}
		out = append(out, m)
	}
	return out
}

// sysMaps is m as the kernel takes it: one line for each extent of this
// process's own map (file) that m's outer ids fall in, since no line may
// span two (a rootless launcher's map has its user, then the range).
func sysMaps(m IDMap, file string) []syscall.SysProcIDMap {
	b, _ := os.ReadFile(file)
	var out []syscall.SysProcIDMap
	in, outer, left := m.Inner, m.Outer, m.Count
	own := parseIDMaps(string(b))
	slices.SortFunc(own, func(a, b IDMap) int { return a.Inner - b.Inner })
	for _, e := range own {
		if left == 0 {
			break
		}
		if outer < e.Inner || outer >= e.Inner+e.Count {
			continue
		}
		n := min(left, e.Inner+e.Count-outer)
		out = append(out, syscall.SysProcIDMap{ContainerID: in, HostID: outer, Size: n})
		in, outer, left = in+n, outer+n, left-n
	}
	if left > 0 || len(out) == 0 {
		// Not all in our map: as given, for the kernel to refuse.
		return []syscall.SysProcIDMap{{ContainerID: m.Inner, HostID: m.Outer, Size: m.Count}}
	}
	return out
}
