package nsexec

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// runBPF interprets the filter's three kinds of instruction on a seccomp_data.
func runBPF(t *testing.T, prog []unix.SockFilter, nr int32, arch uint32, arg1 uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[offNr:], uint32(nr))
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	binary.LittleEndian.PutUint64(data[offArg1:], arg1)
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if a == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: unknown code %#x", pc, in.Code)
		}
	}
	t.Fatal("ran off the end of the filter")
	return 0
}

func TestTerminalFilter(t *testing.T) {
	deny := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	for _, c := range []struct {
		goarch string
		name   string
		nr     int32
		arch   uint32
		arg1   uint64
		want   uint32
	}{
		{"amd64", "TIOCSTI", 16, unix.AUDIT_ARCH_X86_64, unix.TIOCSTI, deny},
		{"amd64", "TIOCSTI, high bits set", 16, unix.AUDIT_ARCH_X86_64, 1<<32 | unix.TIOCSTI, deny},
		{"amd64", "TIOCLINUX", 16, unix.AUDIT_ARCH_X86_64, unix.TIOCLINUX, deny},
		{"amd64", "TCGETS", 16, unix.AUDIT_ARCH_X86_64, unix.TCGETS, allow},
		{"amd64", "read with TIOCSTI's number", 0, unix.AUDIT_ARCH_X86_64, unix.TIOCSTI, allow},
		{"amd64", "x32 TIOCSTI", 0x40000000 | 514, unix.AUDIT_ARCH_X86_64, unix.TIOCSTI, deny},
		{"amd64", "i386 TIOCSTI", 54, unix.AUDIT_ARCH_I386, unix.TIOCSTI, deny},
		{"amd64", "i386 TCGETS", 54, unix.AUDIT_ARCH_I386, unix.TCGETS, allow},
		{"amd64", "i386 syscall 16", 16, unix.AUDIT_ARCH_I386, unix.TIOCSTI, allow},
		{"arm64", "TIOCSTI", 29, unix.AUDIT_ARCH_AARCH64, unix.TIOCSTI, deny},
		{"arm64", "TIOCLINUX, high bits set", 29, unix.AUDIT_ARCH_AARCH64, 7<<40 | unix.TIOCLINUX, deny},
		{"arm64", "TCGETS", 29, unix.AUDIT_ARCH_AARCH64, unix.TCGETS, allow},
		{"arm64", "other arch", 29, unix.AUDIT_ARCH_X86_64, unix.TIOCSTI, allow},
	} {
		if got := runBPF(t, terminalFilter(c.goarch), c.nr, c.arch, c.arg1); got != c.want {
			t.Errorf("%s %s: %#x, want %#x", c.goarch, c.name, got, c.want)
		}
	}
}
