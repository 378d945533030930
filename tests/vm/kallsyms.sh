#!/usr/bin/env bash
# Prints the test VM kernel's text symbols (address, type, name), for the
# RIPs run.sh samples from a hung guest: with nokaslr the addresses are
# the same on every boot, and Debian's System.map is a placeholder.
#   tests/vm/kallsyms.sh > /tmp/kallsyms; then for each RIP, the line with
#   the greatest address not above it names the function.
set -euo pipefail
kernel=${CLU_VM_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
busybox=${CLU_VM_BUSYBOX:-/bin/busybox}
work=$(mktemp -d /tmp/cl-unshare-kallsyms.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/proc"
cp "$busybox" "$work/root/bin/busybox"
cat > "$work/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo KALLSYMS-BEGIN
/bin/busybox grep ' [Tt] ' /proc/kallsyms | /bin/busybox grep -v '\['
echo KALLSYMS-END
/bin/busybox poweroff -f
INIT
chmod 0755 "$work/root/init"
(cd "$work/root" && find . | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -1 > "$work/initrd"
timeout 120 qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 1 -nographic -no-reboot \
	-kernel "$kernel" -initrd "$work/initrd" -append "console=ttyS0 quiet nokaslr panic=-1" </dev/null 2>&1 |
	tr -d '\r' | sed -n '/KALLSYMS-BEGIN/,/KALLSYMS-END/p' | grep -E '^[0-9a-f]{16} [Tt] ' | LC_ALL=C sort
