package nsexec

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noTerminalInjection installs, on this thread (and so in everything it
// execs or forks), a seccomp filter that fails ioctl TIOCSTI and TIOCLINUX
// with EPERM. A --user level's command may hold the terminal of whoever
// started it; with TIOCSTI it could type into that user's shell once the
// level ends, and run as that user (bubblewrap's CVE-2017-5226). The
// kernel takes an ioctl command as 32 bits, so only the low 32 bits of the
// argument are compared (a filter comparing 64 was CVE-2019-10063).
func noTerminalInjection() error {
	prog := terminalFilter(runtime.GOARCH)
	if prog == nil {
		return nil // no filter for this architecture yet
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("seccomp filter against TIOCSTI: %w", err)
	}
	return nil
}

// Offsets in struct seccomp_data: the syscall number, the audit arch, and
// the low 32 bits of the second argument (little-endian).
const (
	offNr   = 0
	offArch = 4
	offArg1 = 24
)

func terminalFilter(goarch string) []unix.SockFilter {
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	allow, deny := ret(unix.SECCOMP_RET_ALLOW), ret(unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM))
	switch goarch {
	case "amd64":
		// Native ioctl (16), x32's (0x40000000|514) and i386's (54):
		// an x86-64 process can make all three.
		return []unix.SockFilter{
			/* 0 */ ld(offArch),
			/* 1 */ jeq(unix.AUDIT_ARCH_X86_64, 0, 4), // else 6
			/* 2 */ ld(offNr),
			/* 3 */ jeq(16, 5, 0), // ioctl: 9
			/* 4 */ jeq(0x40000000|514, 4, 0), // x32 ioctl: 9
			/* 5 */ allow,
			/* 6 */ jeq(unix.AUDIT_ARCH_I386, 0, 5), // else 12
			/* 7 */ ld(offNr),
			/* 8 */ jeq(54, 0, 3), // else 12
			/* 9 */ ld(offArg1),
			/* 10 */ jeq(unix.TIOCSTI, 2, 0), // 13
			/* 11 */ jeq(unix.TIOCLINUX, 1, 0), // 13
			/* 12 */ allow,
			/* 13 */ deny,
		}
	case "arm64":
		return []unix.SockFilter{
			/* 0 */ ld(offArch),
			/* 1 */ jeq(unix.AUDIT_ARCH_AARCH64, 0, 5), // else 7
			/* 2 */ ld(offNr),
			/* 3 */ jeq(29, 0, 3), // ioctl, else 7
			/* 4 */ ld(offArg1),
			/* 5 */ jeq(unix.TIOCSTI, 2, 0), // 8
			/* 6 */ jeq(unix.TIOCLINUX, 1, 0), // 8
			/* 7 */ allow,
			/* 8 */ deny,
		}
	}
	return nil
}
