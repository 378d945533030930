package level

import (
	"fmt"

	"github.com/cl-unshare/cl-unshare/internal/names"
	"math"
	"strconv"
	"strings"
)

// ValidateName checks a level name, [A-Za-z0-9][A-Za-z0-9_.-]{0,63}: it
// becomes a cgroup and directory name.
func ValidateName(name string) error { return names.Valid(name) }

// ParseSize parses a byte count with an optional binary suffix K, M, G or
// T (KiB ... also accepted), as unshare and systemd users write them.
func ParseSize(s string) (int64, error) {
	bad := fmt.Errorf("invalid size %q (use a number with K, M, G or T)", s)
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "IB"), "B")
	mult := float64(1)
	if n := len(u); n > 0 {
		if i := strings.IndexByte("KMGT", u[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			u = u[:n-1]
		}
	}
	if u == "" || strings.ContainsAny(u, "+-eExX_") {
		return 0, bad
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f <= 0 || f*mult > math.MaxInt64/2 {
		return 0, bad
	}
	n := int64(f * mult)
	if n < 1 {
		return 0, bad
	}
	return n, nil
}

// ParseCPUs parses a CPU quota such as 1, 0.5 or 2.25.
func ParseCPUs(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0.01 || f > 1e6 || math.IsNaN(f) {
		return 0, fmt.Errorf("invalid CPU quota %q (use a number of CPUs from 0.01 to 1000000, such as 1 or 1.5)", s)
	}
	return f, nil
}

// ParseList checks a cpuset list such as "0-3,6" and returns it normalized.
func ParseList(s string) (string, error) {
	bad := fmt.Errorf("invalid list %q (use numbers and ranges such as 0-3,6)", s)
	var parts []string
	for _, p := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(p, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return "", bad
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 16)
			if err != nil || b < a {
				return "", bad
			}
			parts = append(parts, fmt.Sprintf("%d-%d", a, b))
			continue
		}
		parts = append(parts, strconv.FormatUint(a, 10))
	}
	return strings.Join(parts, ","), nil
}

// ParseSetting parses a --set FILE=VALUE.
func ParseSetting(s string) (file, value string, err error) {
	file, value, ok := strings.Cut(s, "=")
	if !ok || file == "" {
		return "", "", fmt.Errorf("invalid setting %q (use FILE=VALUE, such as memory.high=1G)", s)
	}
	if strings.ContainsAny(file, "/\x00") || !strings.Contains(file, ".") || strings.HasPrefix(file, ".") {
		return "", "", fmt.Errorf("invalid controller file %q (use a file name such as memory.high or pids.max)", file)
	}
	if c, _, _ := strings.Cut(file, "."); c == "cgroup" && file != "cgroup.max.depth" && file != "cgroup.max.descendants" {
		// cgroup.procs would move any process into the level (to die with
		// it), cgroup.kill kill it, cgroup.subtree_control take controllers.
		return "", "", fmt.Errorf("%s is a cgroup core file, not a limit (Limits.Set takes a controller's files, such as memory.high, and of the core files only cgroup.max.depth and cgroup.max.descendants)", file)
	}
	if strings.ContainsAny(value, "\n\x00") {
		return "", "", fmt.Errorf("invalid value for %s: it must be one line", file)
	}
	return file, value, nil
}
