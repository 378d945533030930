package tests

import (
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"
)

// BenchmarkStartLatency times `cl-unshare -- /bin/true` beside util-linux
// `unshare --mount --cgroup --fork /bin/true`, interleaved in one run so
// both see the same machine, and reports the medians and their ratio.
// Run it with `make bench`.
func BenchmarkStartLatency(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		b.Skip("needs util-linux unshare to compare with")
	}
	cmds := map[string][]string{
		"cl-unshare": {bin, "--cgroup-parent", testParent, "--", "/bin/true"},
		"unshare":    {unshare, "--mount", "--cgroup", "--fork", "/bin/true"},
	}
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, name := range []string{"cl-unshare", "unshare"} {
			argv := cmds[name]
			t0 := time.Now()
			if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%s: %v: %s", name, err, out)
			}
			times[name] = append(times[name], time.Since(t0))
		}
	}
	b.StopTimer()
	cl, un := median(times["cl-unshare"]), median(times["unshare"])
	b.ReportMetric(float64(cl.Microseconds())/1000, "cl-unshare-ms")
	b.ReportMetric(float64(un.Microseconds())/1000, "unshare-ms")
	b.ReportMetric(float64(cl)/float64(un), "ratio")
	b.ReportMetric(0, "ns/op")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
