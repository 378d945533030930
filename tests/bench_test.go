package tests

import (
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStartLatency times `cl-unshare -- /bin/true` (also with --exec,
// --pid --mount-proc and --user) beside util-linux `unshare --mount
// --cgroup --fork /bin/true` (and unshare's own --pid --mount-proc and
// --user --map-root-user), interleaved in one run so all see the same
// machine, and reports the medians and each ratio to its unshare's.
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
		// --exec leaves the level for gc, which runs untimed after it.
		"exec":         {bin, "--exec", "--cgroup-parent", testParent, "--", "/bin/true"},
		"pid":          {bin, "--pid", "--mount-proc", "--cgroup-parent", testParent, "--", "/bin/true"},
		"user":         {bin, "--user", "--cgroup-parent", testParent, "--", "/bin/true"},
		"proc-view":    {bin, "--proc-view", "--cgroup-parent", testParent, "--", "/bin/true"},
		"unshare":      {unshare, "--mount", "--cgroup", "--fork", "/bin/true"},
		"unshare-pid":  {unshare, "--mount", "--cgroup", "--fork", "--pid", "--mount-proc", "/bin/true"},
		"unshare-user": {unshare, "--mount", "--cgroup", "--fork", "--user", "--map-root-user", "/bin/true"},
	}
	order := []string{"cl-unshare", "exec", "pid", "user", "proc-view", "unshare", "unshare-pid", "unshare-user"}
	// What each is measured against: unshare doing the same (--proc-view,
	// which unshare has not: cl-unshare without it).
	against := map[string]string{"cl-unshare": "unshare", "exec": "unshare", "pid": "unshare-pid", "user": "unshare-user", "proc-view": "cl-unshare"}
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, name := range order {
			argv := cmds[name]
			t0 := time.Now()
			if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%s: %v: %s", name, err, out)
			}
			times[name] = append(times[name], time.Since(t0))
			if name == "exec" {
				b.StopTimer()
				exec.Command(bin, "gc").Run()
				b.StartTimer()
			}
		}
	}
	b.StopTimer()
	for _, name := range order {
		m := median(times[name])
		b.ReportMetric(float64(m.Microseconds())/1000, name+"-ms")
		if base, ok := against[name]; ok {
			b.ReportMetric(float64(m)/float64(median(times[base])), name+"-ratio")
		}
	}
	b.ReportMetric(0, "ns/op")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkProcViewRead times one read of /proc/meminfo and of
// /proc/cpuinfo (open, read to the end, close) in a level with
// --proc-view and on the host, in the same run, and reports the medians
// and what the view adds to each read.
func BenchmarkProcViewRead(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	// Back to back, as a program that polls; and 150 ms apart, when the
	// view renders every read afresh (it serves a reader's rendering to
	// its next request for 100 ms, so that an open and its fstat agree).
	for _, pace := range []struct{ name, reads, gap string }{{"", "2000", "0s"}, {"-fresh", "40", "150ms"}} {
		for _, file := range []string{"meminfo", "cpuinfo"} {
			var host, view time.Duration
			for i := 0; i < b.N; i++ {
				h := exec.Command(self, "/proc/"+file, pace.reads, pace.gap)
				h.Env = append(os.Environ(), "CLU_HELPER=readloop")
				out, err := h.Output()
				if err != nil {
					b.Fatalf("host: %v", err)
				}
				host += parseNanos(b, out)
				v := exec.Command(bin, "--proc-view", "--memory", "256M", "--cgroup-parent", testParent, "--", self, "/proc/"+file, pace.reads, pace.gap)
				v.Env = append(os.Environ(), "CLU_HELPER=readloop")
				if out, err = v.Output(); err != nil {
					b.Fatalf("view: %v", err)
				}
				view += parseNanos(b, out)
			}
			host, view = host/time.Duration(b.N), view/time.Duration(b.N)
			b.ReportMetric(float64(host.Microseconds()), file+pace.name+"-host-us")
			b.ReportMetric(float64(view.Microseconds()), file+pace.name+"-view-us")
			b.ReportMetric(float64((view - host).Microseconds()), file+pace.name+"-extra-us")
		}
	}
	b.ReportMetric(0, "ns/op")
}

func parseNanos(b *testing.B, out []byte) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		b.Fatalf("readloop said %q", out)
	}
	return time.Duration(n)
}
