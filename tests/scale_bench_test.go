package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkScale measures what a level costs with others running: the
// median start of `cl-unshare -- /bin/true` beside `unshare -m -C -f
// /bin/true` at the same moment, with 0, 100 and 500 levels of sleep
// running (CL_BENCH_LEVELS="0,100,500"), and at each step `list`, `kill
// NAME` of one more level and a level's own teardown; the supervisors'
// memory, and the time to kill them all, 20 at a time.
func BenchmarkScale(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		b.Skip("needs util-linux unshare to compare with")
	}
	steps := []int{0, 100, 500}
	if s := os.Getenv("CL_BENCH_LEVELS"); s != "" {
		steps = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("CL_BENCH_LEVELS: %v", err)
			}
			steps = append(steps, n)
		}
	}
	f := &fleet{b: b}
	b.Cleanup(f.stopAll)
	b.ResetTimer()
	for _, n := range steps {
		b.StopTimer()
		f.grow(n)
		// Levels running, not levels just started: the kernel finishes
		// bringing up a few hundred levels' cgroups for seconds after.
		time.Sleep(5 * time.Second)
		b.StartTimer()
		// In blocks, not interleaved: an unshare that copied thousands of
		// mounts slows whatever starts right after it (at 500 levels a
		// start took 36 ms after each unshare, 21 ms in a row).
		var ours, theirs []time.Duration
		for i := 0; i < 15; i++ {
			ours = append(ours, timed(b, bin, "--cgroup-parent", testParent, "--", "/bin/true"))
		}
		for i := 0; i < 15; i++ {
			theirs = append(theirs, timed(b, unshare, "--mount", "--cgroup", "--fork", "/bin/true"))
		}
		time.Sleep(100 * time.Millisecond)
		var lists, kills, downs []time.Duration
		for i := 0; i < 3; i++ {
			lists = append(lists, timed(b, bin, "list"))
		}
		for i := 0; i < 5; i++ {
			kills = append(kills, f.killOne(n, i))
			downs = append(downs, f.teardown(n, i))
		}
		m, u := median(ours), median(theirs)
		b.ReportMetric(ms(m), fmt.Sprintf("start@%d-ms", n))
		b.ReportMetric(ms(u), fmt.Sprintf("unshare@%d-ms", n))
		b.ReportMetric(float64(m)/float64(u), fmt.Sprintf("ratio@%d", n))
		b.ReportMetric(ms(median(lists)), fmt.Sprintf("list@%d-ms", n))
		b.ReportMetric(ms(median(kills)), fmt.Sprintf("kill@%d-ms", n))
		b.ReportMetric(ms(median(downs)), fmt.Sprintf("teardown@%d-ms", n))
		if n > 0 {
			rss, anon := f.memory()
			b.ReportMetric(rss, fmt.Sprintf("rss@%d-MiB", n))
			b.ReportMetric(anon, fmt.Sprintf("anon@%d-MiB", n))
		}
	}
	b.StopTimer()
	if n := len(f.levels); n > 0 {
		t0 := time.Now()
		f.killAll()
		b.ReportMetric(time.Since(t0).Seconds(), fmt.Sprintf("kill%d-s", n))
	}
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func timed(b *testing.B, argv ...string) time.Duration {
	t0 := time.Now()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return time.Since(t0)
}

// startSleep starts a level of sleep named name, and returns it with
// the read end of its --ready-fd, which reads EOF once it is ready (or
// gone).
func startSleep(name string) (*exec.Cmd, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	c := exec.Command(bin, "--cgroup-parent", testParent, "--name", name, "--ready-fd", "3", "--", "sleep", "1000000")
	c.ExtraFiles = []*os.File{w}
	err = c.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return c, r, nil
}

// untilReady waits for a level's ready fd to close.
func untilReady(r *os.File) {
	var buf [1]byte
	r.Read(buf[:])
	r.Close()
}

// extra starts one more level of sleep, ready when it returns; the
// caller ends it.
func (f *fleet) extra(name string) *exec.Cmd {
	c, r, err := startSleep(name)
	if err != nil {
		f.b.Fatal(err)
	}
	untilReady(r)
	return c
}

// killOne times `cl-unshare kill NAME` of one more level, to its
// supervisor's end.
func (f *fleet) killOne(n, i int) time.Duration {
	name := fmt.Sprintf("scale-kill-%d-%d-%d", os.Getpid(), n, i)
	c := f.extra(name)
	t0 := time.Now()
	out, err := exec.Command(bin, "kill", name).CombinedOutput()
	c.Wait()
	if err != nil {
		f.b.Fatalf("kill %s: %v: %s", name, err, out)
	}
	return time.Since(t0)
}

// teardown times a level's own end: from its CMD's death to its
// supervisor's exit, which undoes all the level made.
func (f *fleet) teardown(n, i int) time.Duration {
	name := fmt.Sprintf("scale-down-%d-%d-%d", os.Getpid(), n, i)
	c := f.extra(name)
	out, err := exec.Command(bin, "inspect", "--json", name).Output()
	var info struct {
		CmdPID int `json:"cmd_pid"`
	}
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	if err != nil || info.CmdPID == 0 {
		c.Process.Signal(os.Interrupt)
		c.Wait()
		f.b.Fatalf("inspect %s: %v: %s", name, err, out)
	}
	t0 := time.Now()
	syscall.Kill(info.CmdPID, syscall.SIGKILL)
	c.Wait()
	return time.Since(t0)
}

// fleet is the levels of sleep a benchmark keeps running.
type fleet struct {
	b      *testing.B
	mu     sync.Mutex
	levels []*exec.Cmd
	names  []string
}

// grow starts levels, 20 at a time, until n run; each counts once ready.
func (f *fleet) grow(n int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := len(f.levels); i < n; i++ {
		name := fmt.Sprintf("scale-%d-%d", os.Getpid(), i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, r, err := startSleep(name)
			if err != nil {
				f.b.Error(err)
				return
			}
			f.mu.Lock()
			f.levels, f.names = append(f.levels, c), append(f.names, name)
			f.mu.Unlock()
			untilReady(r)
		}()
	}
	wg.Wait()
	if f.b.Failed() {
		f.b.FailNow()
	}
}

// memory is the supervisors' mean RSS and anonymous memory, in MiB.
func (f *fleet) memory() (rss, anon float64) {
	for _, c := range f.levels {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Process.Pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			fs := strings.Fields(l)
			if len(fs) >= 2 && fs[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(fs[1], 64)
				rss += kb / 1024
			}
			if len(fs) >= 2 && fs[0] == "RssAnon:" {
				kb, _ := strconv.ParseFloat(fs[1], 64)
				anon += kb / 1024
			}
		}
	}
	n := float64(len(f.levels))
	return rss / n, anon / n
}

// killAll kills every level with `cl-unshare kill`, 20 at a time, and
// waits for each supervisor to finish its teardown.
func (f *fleet) killAll() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i, c := range f.levels {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if out, err := exec.Command(bin, "kill", f.names[i]).CombinedOutput(); err != nil {
				f.b.Errorf("kill %s: %v: %s", f.names[i], err, out)
			}
			c.Wait()
		}()
	}
	wg.Wait()
	f.levels, f.names = nil, nil
}

// stopAll ends whatever a failed benchmark left running.
func (f *fleet) stopAll() {
	for _, c := range f.levels {
		c.Process.Signal(os.Interrupt)
	}
	for _, c := range f.levels {
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			c.Wait()
		}
	}
	f.levels = nil
}
