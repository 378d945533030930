package cgroup

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// hybridHS are the hierarchies of the captured hybrid host, index == ID.
func hybridHS() []Hierarchy {
	hs := []Hierarchy{{ID: 0, Path: "/", Mount: "/sys/fs/cgroup/unified", Root: "/"}}
	for i, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd"} {
		hs = append(hs, Hierarchy{ID: i + 1, Controllers: []string{c}, Path: "/", Mount: "/sys/fs/cgroup/" + c, Root: "/"})
	}
	return hs
}

var (
	hybridV2  = []string{"hugetlb"}
	unifiedV2 = []string{"cpuset", "cpu", "io", "memory", "pids"}
)

func unifiedHS() []Hierarchy {
	return []Hierarchy{{ID: 0, Path: "/user.slice", Mount: "/sys/fs/cgroup", Root: "/"}}
}

// legacyHS has combined cpu,cpuacct and no cgroup2.
func legacyHS() []Hierarchy {
	return []Hierarchy{
		{ID: 1, Controllers: []string{"name=systemd"}},
		{ID: 3, Controllers: []string{"cpu", "cpuacct"}},
		{ID: 4, Controllers: []string{"memory"}},
		{ID: 5, Controllers: []string{"pids"}},
		{ID: 8, Controllers: []string{"cpuset"}},
	}
}

func allLimits() Limits {
	return Limits{
		Memory:     512 << 20,
		CPUs:       0.5,
		CPUWeight:  100,
		CpusetCPUs: "0-1",
		CpusetMems: "0",
		PidsMax:    64,
	}
}

func writesString(ws []Write) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "\t%+v\n", w)
	}
	return b.String()
}

func checkWrites(t *testing.T, got, want []Write) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d writes:\n%swant %d:\n%s", len(got), writesString(got), len(want), writesString(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("write %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestPlanHybrid(t *testing.T) {
	l := allLimits()
	l.Set = []Setting{
		{File: "cgroup.max.depth", Value: "3"},
		{File: "hugetlb.2MB.max", Value: "1G"},
		{File: "memory.soft_limit_in_bytes", Value: "256M"},
	}
	ws, err := Plan(l, hybridHS(), hybridV2)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	checkWrites(t, ws, []Write{
		{Hierarchy: 4, Controller: "memory", File: "memory.limit_in_bytes", Value: "536870912", Field: "Limits.Memory"},
		{Hierarchy: 1, Controller: "cpu", File: "cpu.cfs_period_us", Value: "100000", Field: "Limits.CPUs"},
		{Hierarchy: 1, Controller: "cpu", File: "cpu.cfs_quota_us", Value: "50000", Field: "Limits.CPUs"},
		{Hierarchy: 1, Controller: "cpu", File: "cpu.shares", Value: fmt.Sprint(WeightToShares(100)), Field: "Limits.CPUWeight"},
		{Hierarchy: 3, Controller: "cpuset", File: "cpuset.cpus", Value: "0-1", Field: "Limits.CpusetCPUs"},
		{Hierarchy: 3, Controller: "cpuset", File: "cpuset.mems", Value: "0", Field: "Limits.CpusetMems"},
		{Hierarchy: 8, Controller: "pids", File: "pids.max", Value: "64", Field: "Limits.PidsMax"},
		{Hierarchy: 0, Controller: "cgroup", File: "cgroup.max.depth", Value: "3", Field: "Limits.Set cgroup.max.depth"},
		{Hierarchy: 0, Controller: "hugetlb", File: "hugetlb.2MB.max", Value: "1G", Field: "Limits.Set hugetlb.2MB.max"},
		{Hierarchy: 4, Controller: "memory", File: "memory.soft_limit_in_bytes", Value: "256M", Field: "Limits.Set memory.soft_limit_in_bytes"},
	})
	if WeightToShares(100) != 2597 {
		t.Errorf("cpu.shares for weight 100 = %d, want 2597", WeightToShares(100))
	}
}

func TestPlanUnified(t *testing.T) {
	l := allLimits()
	l.Set = []Setting{
		{File: "cgroup.max.depth", Value: "3"},
		{File: "memory.high", Value: "1G"},
		{File: "io.weight", Value: "default 50"},
	}
	ws, err := Plan(l, unifiedHS(), unifiedV2)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	checkWrites(t, ws, []Write{
		{Hierarchy: 0, Controller: "memory", File: "memory.max", Value: "536870912", Field: "Limits.Memory"},
		{Hierarchy: 0, Controller: "cpu", File: "cpu.max", Value: "50000 100000", Field: "Limits.CPUs"},
		{Hierarchy: 0, Controller: "cpu", File: "cpu.weight", Value: "100", Field: "Limits.CPUWeight"},
		{Hierarchy: 0, Controller: "cpuset", File: "cpuset.cpus", Value: "0-1", Field: "Limits.CpusetCPUs"},
		{Hierarchy: 0, Controller: "cpuset", File: "cpuset.mems", Value: "0", Field: "Limits.CpusetMems"},
		{Hierarchy: 0, Controller: "pids", File: "pids.max", Value: "64", Field: "Limits.PidsMax"},
		{Hierarchy: 0, Controller: "cgroup", File: "cgroup.max.depth", Value: "3", Field: "Limits.Set cgroup.max.depth"},
		{Hierarchy: 0, Controller: "memory", File: "memory.high", Value: "1G", Field: "Limits.Set memory.high"},
		{Hierarchy: 0, Controller: "io", File: "io.weight", Value: "default 50", Field: "Limits.Set io.weight"},
	})
}

func TestPlanLegacy(t *testing.T) {
	l := allLimits()
	// On a legacy host whatever cgroup.controllers is said to list, there
	// is no cgroup2 to write it to.
	ws, err := Plan(l, legacyHS(), unifiedV2)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	checkWrites(t, ws, []Write{
		{Hierarchy: 2, Controller: "memory", File: "memory.limit_in_bytes", Value: "536870912", Field: "Limits.Memory"},
		{Hierarchy: 1, Controller: "cpu", File: "cpu.cfs_period_us", Value: "100000", Field: "Limits.CPUs"},
		{Hierarchy: 1, Controller: "cpu", File: "cpu.cfs_quota_us", Value: "50000", Field: "Limits.CPUs"},
		{Hierarchy: 1, Controller: "cpu", File: "cpu.shares", Value: "2597", Field: "Limits.CPUWeight"},
		{Hierarchy: 4, Controller: "cpuset", File: "cpuset.cpus", Value: "0-1", Field: "Limits.CpusetCPUs"},
		{Hierarchy: 4, Controller: "cpuset", File: "cpuset.mems", Value: "0", Field: "Limits.CpusetMems"},
		{Hierarchy: 3, Controller: "pids", File: "pids.max", Value: "64", Field: "Limits.PidsMax"},
	})

	_, err = Plan(Limits{Set: []Setting{{File: "cgroup.max.depth", Value: "3"}}}, legacyHS(), nil)
	if err == nil || !strings.Contains(err.Error(), "Limits.Set cgroup.max.depth") || !strings.Contains(err.Error(), "cgroup v2") {
		t.Errorf("cgroup.* on a legacy host: err = %v, want one naming the flag and cgroup v2", err)
	}
}

func TestPlanControllerOnV2InHybrid(t *testing.T) {
	// A controller the unified hierarchy offers is written there, in its
	// v2 form, even on a hybrid host.
	var hs []Hierarchy
	for _, h := range hybridHS() {
		if !h.Has("cpu") && !h.Has("memory") {
			hs = append(hs, h)
		}
	}
	ws, err := Plan(Limits{CPUs: 1.5, CPUWeight: 1, Memory: 1 << 30}, hs, []string{"cpu", "memory"})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	checkWrites(t, ws, []Write{
		{Hierarchy: 0, Controller: "memory", File: "memory.max", Value: "1073741824", Field: "Limits.Memory"},
		{Hierarchy: 0, Controller: "cpu", File: "cpu.max", Value: "150000 100000", Field: "Limits.CPUs"},
		{Hierarchy: 0, Controller: "cpu", File: "cpu.weight", Value: "1", Field: "Limits.CPUWeight"},
	})
}

func TestPlanCPUQuota(t *testing.T) {
	for _, c := range []struct {
		cpus  float64
		quota string
	}{
		{0.01, "1000"},
		{0.5, "50000"},
		{1, "100000"},
		{1.5, "150000"},
		{2.25, "225000"},
		{0.333, "33300"},
		{0.123456, "12346"}, // rounded, not truncated
		{64, "6400000"},
	} {
		ws, err := Plan(Limits{CPUs: c.cpus}, unifiedHS(), unifiedV2)
		if err != nil || len(ws) != 1 || ws[0].Value != c.quota+" 100000" {
			t.Errorf("unified, --cpus %g: %+v, %v; want cpu.max %q", c.cpus, ws, err, c.quota+" 100000")
		}
		ws, err = Plan(Limits{CPUs: c.cpus}, hybridHS(), hybridV2)
		if err != nil || len(ws) != 2 || ws[0].File != "cpu.cfs_period_us" || ws[0].Value != "100000" ||
			ws[1].File != "cpu.cfs_quota_us" || ws[1].Value != c.quota {
			t.Errorf("hybrid, --cpus %g: %+v, %v; want period 100000 then quota %s", c.cpus, ws, err, c.quota)
		}
	}
}

func TestPlanNothing(t *testing.T) {
	for _, hs := range [][]Hierarchy{hybridHS(), unifiedHS(), legacyHS(), nil} {
		ws, err := Plan(Limits{}, hs, nil)
		if err != nil || len(ws) != 0 {
			t.Errorf("no limits: %+v, %v; want nothing", ws, err)
		}
	}
}

func TestPlanMissingController(t *testing.T) {
	for _, c := range []struct {
		name        string
		l           Limits
		hs          []Hierarchy
		v2          []string
		field, ctrl string
	}{
		{"--set on hybrid", Limits{Set: []Setting{{File: "rdma.max", Value: "mlx4_0 hca_handle=2"}}}, hybridHS(), hybridV2, "Limits.Set rdma.max", "rdma"},
		{"--set on unified", Limits{Set: []Setting{{File: "hugetlb.2MB.max", Value: "1G"}}}, unifiedHS(), unifiedV2, "Limits.Set hugetlb.2MB.max", "hugetlb"},
		{"--set on legacy", Limits{Set: []Setting{{File: "io.max", Value: "8:0 rbps=1"}}}, legacyHS(), nil, "Limits.Set io.max", "io"},
		{"--memory without memory", Limits{Memory: 1 << 20}, unifiedHS(), []string{"cpu", "pids"}, "Limits.Memory", "memory"},
		{"--cpus without cpu", Limits{CPUs: 1}, unifiedHS(), []string{"memory"}, "Limits.CPUs", "cpu"},
		{"--cpu-weight without cpu", Limits{CPUWeight: 50}, unifiedHS(), nil, "Limits.CPUWeight", "cpu"},
		{"--pids-max without pids", Limits{PidsMax: 5}, legacyHS()[:3], nil, "Limits.PidsMax", "pids"},
		{"--cpuset-cpus without cpuset", Limits{CpusetCPUs: "0"}, legacyHS()[:4], nil, "Limits.CpusetCPUs", "cpuset"},
		{"--cpuset-mems without cpuset", Limits{CpusetMems: "0"}, unifiedHS(), []string{"memory"}, "Limits.CpusetMems", "cpuset"},
		{"first error wins", Limits{Memory: 1, PidsMax: 1, Set: []Setting{{File: "rdma.max", Value: "x"}}}, unifiedHS(), []string{"pids"}, "Limits.Memory", "memory"},
	} {
		_, err := Plan(c.l, c.hs, c.v2)
		var ce *ControllerError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v (%T), want a *ControllerError", c.name, err, err)
			continue
		}
		if ce.Field != c.field || ce.Controller != c.ctrl {
			t.Errorf("%s: ControllerError{%q, %q}, want {%q, %q}", c.name, ce.Field, ce.Controller, c.field, c.ctrl)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, c.field+": ") || !strings.Contains(msg, "the "+c.ctrl+" controller is not available") {
			t.Errorf("%s: message %q does not name the field and controller", c.name, msg)
		}
	}
}

func TestWeightToShares(t *testing.T) {
	for _, c := range []struct{ w, shares uint64 }{
		{1, 2},
		{10000, 262144},
		{100, 2 + 99*262142/9999},
		{2, 2 + 262142/9999},
		{5000, 2 + 4999*262142/9999},
	} {
		if got := WeightToShares(c.w); got != c.shares {
			t.Errorf("WeightToShares(%d) = %d, want %d", c.w, got, c.shares)
		}
	}
	prev := uint64(0)
	for w := uint64(1); w <= 10000; w++ {
		s := WeightToShares(w)
		if s < 2 || s > 262144 || s < prev {
			t.Fatalf("WeightToShares(%d) = %d: out of 2..262144 or not monotonic (previous %d)", w, s, prev)
		}
		prev = s
		// The conversion runc and systemd use maps it back to (nearly) w.
		back := 1 + (s-2)*9999/262142
		if back != w && back+1 != w {
			t.Fatalf("WeightToShares(%d) = %d maps back to weight %d", w, s, back)
		}
	}
}

func TestSettingController(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"memory.high", "memory"},
		{"cgroup.max.depth", "cgroup"},
		{"hugetlb.2MB.max", "hugetlb"},
		{"pids.max", "pids"},
		{"nodot", "nodot"},
	} {
		if got := SettingController(c.file); got != c.want {
			t.Errorf("SettingController(%q) = %q, want %q", c.file, got, c.want)
		}
	}
}
