package cgroup

import (
	"strconv"
	"strings"
)

// Spent is what a level used, read from its outer cgroups (which hold
// its nested levels too). A field is nil where no hierarchy of the host
// counts it: cgroup2 without the controller, or a kernel without the
// file (memory.peak is Linux 5.19, pids.peak 6.1 and v2 only).
type Spent struct {
	MemoryPeakBytes *int64 `json:"memory_peak_bytes,omitempty"`
	CPUUserUsec     *int64 `json:"cpu_user_usec,omitempty"`
	CPUSystemUsec   *int64 `json:"cpu_system_usec,omitempty"`
	TasksPeak       *int64 `json:"tasks_peak,omitempty"`
	IOReadBytes     *int64 `json:"io_read_bytes,omitempty"`
	IOWriteBytes    *int64 `json:"io_write_bytes,omitempty"`
}

// userHZ is the unit of cpuacct.stat: USER_HZ, 100 on every Linux ABI.
const userHZ = 100

// Spent reads what the level has used so far. cgroup2 is read first;
// a v1 hierarchy fills in what it does not count.
func (l *Level) Spent() Spent {
	var s Spent
	if d := l.V2(); d != nil {
		s.MemoryPeakBytes = number(d.Outer, "memory.peak")
		s.CPUUserUsec = keyed(d.Outer, "cpu.stat", "user_usec", 1)
		s.CPUSystemUsec = keyed(d.Outer, "cpu.stat", "system_usec", 1)
		s.TasksPeak = number(d.Outer, "pids.peak")
		s.IOReadBytes, s.IOWriteBytes = ioStat(d.Outer)
	}
	for _, d := range l.Dirs {
		switch {
		case d.V2():
		case d.Has("memory") && s.MemoryPeakBytes == nil:
			s.MemoryPeakBytes = number(d.Outer, "memory.max_usage_in_bytes")
		case d.Has("cpuacct") && s.CPUUserUsec == nil:
			s.CPUUserUsec = keyed(d.Outer, "cpuacct.stat", "user", 1e6/userHZ)
			s.CPUSystemUsec = keyed(d.Outer, "cpuacct.stat", "system", 1e6/userHZ)
		case d.Has("blkio") && s.IOReadBytes == nil:
			s.IOReadBytes, s.IOWriteBytes = blkioBytes(d.Outer)
		}
	}
	return s
}

func number(dir, file string) *int64 {
	v, err := ReadFile(dir, file)
	if err != nil {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil
	}
	return &n
}

func keyed(dir, file, key string, scale int64) *int64 {
	v, err := KeyValue(dir, file, key)
	if err != nil {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil
	}
	n *= scale
	return &n
}

// ioStat sums io.stat's rbytes and wbytes over the devices.
func ioStat(dir string) (read, write *int64) {
	v, err := ReadFile(dir, "io.stat")
	if err != nil {
		return nil, nil
	}
	var r, w int64
	for _, line := range strings.Split(v, "\n") {
		for _, f := range strings.Fields(line) {
			k, val, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(val, 10, 64)
			switch k {
			case "rbytes":
				r += n
			case "wbytes":
				w += n
			}
		}
	}
	return &r, &w
}

// blkioBytes sums the Read and Write lines of v1's throttle counters,
// which count every device, over the cgroup and its descendants.
func blkioBytes(dir string) (read, write *int64) {
	v, err := ReadFile(dir, "blkio.throttle.io_service_bytes_recursive")
	if err != nil {
		return nil, nil
	}
	var r, w int64
	for _, line := range strings.Split(v, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.ParseInt(f[2], 10, 64)
		switch f[1] {
		case "Read":
			r += n
		case "Write":
			w += n
		}
	}
	return &r, &w
}
