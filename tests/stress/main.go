// Command stress churns levels as the hosts they are for do, and checks
// that nothing of them is left: it starts -levels levels, -at a time,
// each ended at a random moment (setup included) in one of the ways a
// level ends, runs one `cl-unshare gc`, and lists what is left of them on
// the host (cgroups in every hierarchy, mounts, run directories, state
// files, processes), which must be nothing; a second gc must print
// nothing. Run it as root with `make stress`; it exits 1 on a leftover.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cl-unshare/cl-unshare/level/cgroup"
	"github.com/cl-unshare/cl-unshare/mounts"
)

// The ways a level ends.
var endings = []string{
	"cmd-exits",      // CMD exits by itself
	"sigterm-super",  // SIGTERM to the supervisor, passed on to CMD
	"sigkill-super",  // SIGKILL to the supervisor: gc collects the rest
	"sigkill-cmd",    // SIGKILL to CMD
	"clu-kill",       // cl-unshare kill NAME
	"nested-killed",  // a nested level inside, killed with its parent
	"nested-sigkill", // the same, the parent's supervisor SIGKILLed
}

const runDir = "/run/cl-unshare"

type run struct {
	bin, parent, mark string
	tmp               string
	mu                sync.Mutex
	count             map[string]int
	lines             map[string]int // what supervisors printed
	failures          []string
}

func main() {
	bin := flag.String("bin", "bin/cl-unshare", "the cl-unshare binary")
	n := flag.Int("levels", 1000, "levels to start")
	at := flag.Int("at", 20, "levels starting or running at a time")
	life := flag.Duration("life", 2*time.Second, "the longest a level lives before it is ended")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "stress: needs root (sudo make stress)")
		os.Exit(2)
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress:", err)
		os.Exit(2)
	}
	tmp, err := os.MkdirTemp("", "clu-stress-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress:", err)
		os.Exit(2)
	}
	defer os.RemoveAll(tmp)
	r := &run{bin: abs, parent: fmt.Sprintf("clu-stress-%d", os.Getpid()), mark: fmt.Sprintf("CLU_STRESS=%d", os.Getpid()), tmp: tmp, count: map[string]int{}, lines: map[string]int{}}
	before := r.leftovers()

	t0 := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, *at)
	for i := 0; i < *n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.one(i, endings[rand.IntN(len(endings))], time.Duration(rand.Int64N(int64(*life))))
		}()
	}
	wg.Wait()
	churn := time.Since(t0)

	first := r.gc()
	left := diff(before, r.leftovers())
	second := r.gc()

	fmt.Printf("stress: %d levels, %d at a time, in %.1f s\n", *n, *at, churn.Seconds())
	if !r.report(first, left, second) {
		os.Exit(1)
	}
}

// report prints what happened and what is left; it says whether that is
// nothing.
func (r *run) report(first, left, second []string) bool {
	for _, e := range endings {
		fmt.Printf("  %-15s %d\n", e, r.count[e])
	}
	said := make([]string, 0, len(r.lines))
	for l := range r.lines {
		said = append(said, l)
	}
	sort.Strings(said)
	for _, l := range said {
		fmt.Printf("  said %4d× %s\n", r.lines[l], l)
	}
	fmt.Printf("first gc: %d lines\n", len(first))
	for _, f := range r.failures {
		fmt.Println("failure:", f)
	}
	for _, l := range left {
		fmt.Println("left:", l)
	}
	for _, l := range second {
		fmt.Println("second gc:", l)
	}
	fmt.Printf("left behind: %d; second gc: %d lines; failures: %d\n", len(left), len(second), len(r.failures))
	return len(left) == 0 && len(second) == 0 && len(r.failures) == 0
}

// one starts level i and ends it after d in the given way.
func (r *run) one(i int, ending string, d time.Duration) {
	name := fmt.Sprintf("stress-%d-%d", os.Getpid(), i)
	pidFile := filepath.Join(r.tmp, name+".pid")
	sh := "echo $$ > " + pidFile + "; exec sleep 1000"
	switch ending {
	case "cmd-exits":
		sh = fmt.Sprintf("sleep %.3f", d.Seconds())
	case "nested-killed", "nested-sigkill":
		sh = "echo $$ > " + pidFile + "; exec " + r.bin + " --name inner -- sleep 1000"
	}
	c := exec.Command(r.bin, "--cgroup-parent", r.parent, "--name", name, "--", "sh", "-c", sh)
	c.Env = append(os.Environ(), r.mark)
	// A file, not a pipe: an orphaned level's processes would hold a
	// pipe open, and Wait waits for that.
	out, err := os.Create(filepath.Join(r.tmp, name+".out"))
	if err != nil {
		r.fail("%s: %v", name, err)
		return
	}
	defer out.Close()
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		r.fail("%s: start: %v", name, err)
		return
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	r.add(ending)
	timer := time.After(d)
	select {
	case <-done:
	case <-timer:
	}
	r.end(c, name, ending, pidFile, done)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.fail("%s (%s): supervisor still running 30 s after its end", name, ending)
		c.Process.Kill()
		<-done
	}
	b, _ := os.ReadFile(out.Name())
	if strings.Contains(string(b), "panic") || strings.Contains(string(b), "left behind") {
		r.fail("%s (%s): %s", name, ending, b)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			r.said(ending, l)
		}
	}
}

// end ends level name, whose supervisor is c, the given way.
func (r *run) end(c *exec.Cmd, name, ending, pidFile string, done chan struct{}) {
	switch ending {
	case "sigterm-super":
		c.Process.Signal(syscall.SIGTERM)
	case "sigkill-super", "nested-sigkill":
		c.Process.Signal(syscall.SIGKILL)
	case "sigkill-cmd":
		if pid := waitPid(pidFile, done); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	case "clu-kill", "nested-killed":
		// During setup the level may not be listed yet: try until it ends.
		for {
			if exec.Command(r.bin, "kill", name).Run() == nil {
				break
			}
			select {
			case <-done:
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
	}
}

// waitPid waits for CMD's pid file, or for the supervisor to end.
func waitPid(path string, done chan struct{}) int {
	for {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		select {
		case <-done:
			return 0
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (r *run) add(ending string) {
	r.mu.Lock()
	r.count[ending]++
	r.mu.Unlock()
}

// said counts what supervisors printed, by ending, with numbers and
// names taken out so that the same message counts once.
func (r *run) said(ending, line string) {
	line = digits.ReplaceAllString(line, "N")
	r.mu.Lock()
	r.lines[ending+": "+line]++
	r.mu.Unlock()
}

var digits = regexp.MustCompile(`[0-9]+`)

func (r *run) fail(format string, a ...any) {
	r.mu.Lock()
	r.failures = append(r.failures, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

// gc runs `cl-unshare gc` and returns the lines it printed.
func (r *run) gc() []string {
	out, err := exec.Command(r.bin, "gc").CombinedOutput()
	if err != nil {
		r.fail("gc: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// leftovers is what levels can leave on the host: mounts of cl-unshare
// or of a cgroup filesystem, cgroups below this process's own in every
// hierarchy, entries of the run directory, and processes that carry
// this run's mark in their environment.
func (r *run) leftovers() []string {
	var out []string
	infos, _ := mounts.Current()
	for _, m := range infos {
		if strings.Contains(m.Mountpoint, "cl-unshare") || m.FSType == "cgroup" || m.FSType == "cgroup2" || m.FSType == "nsfs" || strings.HasPrefix(m.Source, "cl-unshare") {
			out = append(out, "mount "+m.Mountpoint+" "+m.FSType+" "+m.Root)
		}
	}
	if f, err := os.Open("/proc/self/cgroup"); err == nil {
		hs, _ := cgroup.Discover(f, infos)
		f.Close()
		for _, h := range hs {
			base := h.Dir(cgroup.Base(h))
			filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() && p != base {
					out = append(out, "cgroup "+p)
				}
				return nil
			})
		}
	}
	for _, sub := range []string{"levels", "state", "ns"} {
		ents, _ := os.ReadDir(filepath.Join(runDir, sub))
		for _, e := range ents {
			out = append(out, "run "+sub+"/"+e.Name())
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == r.mark {
				cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
				out = append(out, "process "+filepath.Base(filepath.Dir(p))+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
	}
	sort.Strings(out)
	return out
}

func diff(before, after []string) []string {
	had := map[string]bool{}
	for _, s := range before {
		had[s] = true
	}
	var out []string
	for _, s := range after {
		if !had[s] {
			out = append(out, s)
		}
	}
	return out
}
