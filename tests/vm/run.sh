#!/usr/bin/env bash
# make test-vm: runs the integration suite in a VM per cgroup layout.
#
# Builds a static cl-unshare and a static test binary, packs them with
# busybox into an initramfs, boots Debian's kernel under qemu once per
# layout (tests/vm/init sets the layout up), and prints one line per
# layout. Fails if a test fails or a layout does not boot and report.
#
# The systemd layout is different: the guest boots the host's own root
# read-only over 9p (a tmpfs overlay on top) with systemd as PID 1 and runs
# tests/systemd there (tests/vm/systemd).
#
# Environment: CLU_VM_KERNELS (kernels to boot, each layout on each, as
# /boot/vmlinuz-* paths or versions; default: every /boot/vmlinuz-*),
# CLU_VM_KERNEL (one kernel, as before),
# CLU_VM_BUSYBOX (default: /bin/busybox from busybox-static),
# CLU_VM_LAYOUTS (default: all five; the four cgroup layouts alone when
# CLU_VM_RUN names tests of ./tests), CLU_VM_ACCEL (default: tcg; kvm is
# faster where it works), CLU_VM_TIMEOUT (seconds per boot, default 480;
# a layout's suite took 100 s under TCG on one day's machine and 230 s on
# another's, so a slow host must not read as a hang), CLU_VM_STALL (seconds
# without a progress line from the suite after which a boot is hung,
# default 120: it prints one every 20 s), CLU_VM_LOGS (directory to keep
# each console log in).
#
# A boot that hangs (silent for CLU_VM_STALL, or no result before the
# timeout; seen once in about 30 TCG boots here, as a guest-wide soft
# lockup early in the suite) is tried
# once more, and the retry is reported: a hang twice in a row fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

kernels=${CLU_VM_KERNELS:-${CLU_VM_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tr '\n' ' ')}}
busybox=${CLU_VM_BUSYBOX:-/bin/busybox}
if [ -n "${CLU_VM_RUN:-}" ]; then
	layouts=${CLU_VM_LAYOUTS:-unified-nsdelegate unified legacy hybrid}
else
	layouts=${CLU_VM_LAYOUTS:-unified-nsdelegate unified legacy hybrid systemd}
fi
accel=${CLU_VM_ACCEL:-tcg}
limit=${CLU_VM_TIMEOUT:-480}
stall=${CLU_VM_STALL:-120}

die() { echo "test-vm: $*" >&2; exit 1; }
[ -n "${kernels// /}" ] || die "no kernel to boot in /boot (apt-get install linux-image-amd64, or set CLU_VM_KERNELS)"
resolved=
for k in $kernels; do
	case $k in /*) ;; *) k=/boot/vmlinuz-$k ;; esac
	[ -r "$k" ] || die "kernel $k: not readable (CLU_VM_KERNELS takes /boot/vmlinuz-* paths or versions)"
	resolved="$resolved $k"
done
kernels=$resolved
"$busybox" --list 2>/dev/null | grep -x cpio >/dev/null || die "$busybox is not busybox (apt-get install busybox-static, or set CLU_VM_BUSYBOX)"
case "${CLU_VM_RUN:-}" in *" "*) die "CLU_VM_RUN must not contain spaces (it goes on the kernel command line)" ;; esac
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

work=$(mktemp -d /tmp/cl-unshare-vm.XXXXXX)
qemu=
# A hung guest must not outlive the run, whatever ends it.
trap 'if [ -n "$qemu" ]; then kill "$qemu" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,run,etc}
cp "$busybox" "$root/bin/busybox"
cp tests/vm/init "$root/init"
chmod 0755 "$root/init"
export CGO_ENABLED=0
go build -trimpath -tags urfave_cli_no_docs -o "$root/bin/cl-unshare" ./cmd/cl-unshare
go test -c -trimpath -tags urfave_cli_no_docs -o "$root/bin/tests.test" ./tests
case " $layouts " in *" systemd "*)
	go test -c -trimpath -o "$root/bin/systemd.test" ./tests/systemd
	cp -r tests/vm/systemd "$root/systemd"
	[ -x /lib/systemd/systemd ] || die "the systemd layout boots this host's /lib/systemd/systemd: apt-get install systemd"
	command -v modprobe >/dev/null || die "the systemd layout needs modprobe to find the kernel's 9p modules (apt-get install kmod)"
	;;
esac
(cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -1 > "$work/initrd"

# modules_cpio KVER OUT packs the modules the systemd layout loads before
# it mounts the host's root (virtio, 9p, overlay), and fuse, which every
# layout loads, decompressed and in
# load order, as a second initramfs archive (the kernel unpacks both).
modules_cpio() {
	local m=$work/modules-$1 path name
	mkdir -p "$m/modules"
	: > "$m/modules/order"
	modprobe --show-depends -S "$1" -a 9p 9pnet_virtio virtio_pci overlay fuse | while read -r verb path _; do
		[ "$verb" = insmod ] || continue # builtin: nothing to load
		name=$(basename "$path")
		name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
		grep -qx "$name" "$m/modules/order" && continue
		case $path in
		*.xz) xz -dc "$path" > "$m/modules/$name" ;;
		*.zst) zstd -qdc "$path" > "$m/modules/$name" ;;
		*.gz) gzip -dc "$path" > "$m/modules/$name" ;;
		*) cp "$path" "$m/modules/$name" ;;
		esac
		echo "$name" >> "$m/modules/order"
	done
	(cd "$m" && find . | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -1 > "$2"
}

echo "test-vm: kernels$kernels, accel $accel, initramfs $(du -h "$work/initrd" | cut -f1)"
# where_hung asks QEMU's monitor (a unix socket in the 0700 work dir: the
# monitor can run commands, so no TCP port) where each vCPU of a hung
# guest is, three times a second apart. With nokaslr the addresses are the
# same on every boot: tests/vm/kallsyms.sh names them.
where_hung() {
	local out
	echo "where the vCPUs were (RIP, 3 samples; ffffffff8... is the kernel):"
	for i in 1 2 3; do
		out=$(timeout 5 perl -MIO::Socket::UNIX -e '
			my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1;
			print $s "info registers -a\n";
			local $SIG{ALRM} = sub { exit 0 }; alarm 2;
			print while <$s>;' "$1" 2>/dev/null | tr -d '\r' || true)
		echo "    $(echo "$out" | sed -n 's/^RIP=\([0-9a-f]*\).*/\1/p' | tr '\n' ' ')"
	done
}

failed=0 total_p=0 total_f=0 total_s=0 boots=0
all_start=$(date +%s)
for kernel in $kernels; do
kver=${kernel#/boot/vmlinuz-}
initrd=$work/initrd
nov1=
for opt in MEMCG_V1:memory CPUSETS_V1:cpuset; do
	if grep -qx "# CONFIG_${opt%%:*} is not set" "/boot/config-$kver" 2>/dev/null; then
		nov1=${nov1:+$nov1,}${opt#*:}
	fi
done
# Every layout loads fuse (--proc-view), a module in Debian's kernels;
# the systemd layout also 9p and overlay, to boot the host's root.
if [ -d "/lib/modules/$kver" ] && command -v modprobe >/dev/null; then
	modules_cpio "$kver" "$work/modules-$kver.gz"
	cat "$work/initrd" "$work/modules-$kver.gz" > "$work/initrd-$kver"
	initrd=$work/initrd-$kver
fi
for layout in $layouts; do
	boots=$((boots + 1))
	# loglevel=5 keeps the boot quiet but shows a soft lockup's trace;
	# nokaslr lets a hung vCPU's RIP be looked up in System.map.
	args="console=ttyS0 quiet loglevel=5 panic=-1 nokaslr clu.layout=$layout"
	# v1 controllers this kernel is built without (Debian's 6.12 has no
	# v1 memory or cpuset): tests/vm/init mounts no such hierarchy, and
	# the tests that need one say why they skip.
	[ -n "$nov1" ] && args="$args clu.nov1=$nov1"
	extra=()
	case $layout in
	unified*) args="$args cgroup_no_v1=all" ;;
	systemd)
		if [ "$initrd" = "$work/initrd" ]; then
			echo "$kver $layout: no /lib/modules/$kver to load 9p from (the kernel's package is not installed)"
			failed=1
			continue
		fi
		# systemd 252 mounts cgroup2 alone, with nsdelegate, as most hosts.
		args="$args cgroup_no_v1=all systemd.unit=clu-suite.target systemd.unified_cgroup_hierarchy=1 systemd.show_status=0"
		extra=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
		;;
	esac
	# Only some tests, some times over: CLU_VM_RUN=REGEXP (no spaces: it
	# travels on the kernel command line), CLU_VM_COUNT=N.
	[ -n "${CLU_VM_RUN:-}" ] && args="$args clu.run=$CLU_VM_RUN"
	[ -n "${CLU_VM_COUNT:-}" ] && args="$args clu.count=$CLU_VM_COUNT"
	log=$work/$kver-$layout.log
	for try in 1 2; do
		start=$(date +%s)
		qemu-system-x86_64 -accel "$accel" -cpu max -m 1024 -smp 2 \
			-nographic -no-reboot -kernel "$kernel" -initrd "$initrd" \
			-monitor "unix:$work/monitor,server,nowait" "${extra[@]}" \
			-append "$args" </dev/null >"$log" 2>&1 &
		qemu=$!
		# A guest whose suite prints no progress line for $stall seconds
		# is hung: tests/vm/init prints one every 20 s however slow the
		# host, and a soft lockup stops it (while the kernel goes on
		# printing its own complaints). The systemd layout's suite has no
		# such line: only the overall limit.
		beat=$stall
		[ "$layout" = systemd ] && beat=$limit
		last=$start beats=0
		while kill -0 $qemu 2>/dev/null && [ $(( $(date +%s) - start )) -lt "$limit" ]; do
			sleep 1
			now=$(grep -a -c -e '^CLU-PROGRESS' -e '^CLU-RESULT' "$log" 2>/dev/null || true)
			if [ "${now:-0}" != "$beats" ]; then
				beats=${now:-0} last=$(date +%s)
			elif [ $(( $(date +%s) - last )) -ge "$beat" ]; then
				break
			fi
		done
		: > "$log.hung"
		if kill -0 $qemu 2>/dev/null; then
			where_hung "$work/monitor" > "$log.hung"
			kill $qemu 2>/dev/null || true
		fi
		wait $qemu || true
		qemu=
		secs=$(( $(date +%s) - start ))
		tr -d '\r' < "$log" > "$log.txt"
		if [ -n "${CLU_VM_LOGS:-}" ]; then mkdir -p "$CLU_VM_LOGS" && cp "$log.txt" "$CLU_VM_LOGS/$kver-$layout.$try.log"; fi
		result=$(grep -a '^CLU-RESULT' "$log.txt" | tail -n 1 || true)
		[ -n "$result" ] && break
		echo "$kver $layout: boot $try gave no result (silent ${beat}s, or past ${limit}s; stopped after ${secs}s); console tail:"
		{ grep -a -v '^\s*$' "$log.txt" | grep -v 'terminating on signal' || true; } | tail -n 16 | sed 's/^/    /'
		sed 's/^/    /' "$log.hung"
	done
	if [ -z "$result" ]; then
		echo "$kver $layout: did not boot and report, twice"
		failed=1
		continue
	fi
	field() { echo "$result" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
	p=$(field passed) f=$(field failed) s=$(field skipped) rc=$(field exit)
	echo "$kver $layout: $p passed, $f failed, $s skipped (${secs}s: kernel up at $(field booted)s, suite done at $(field done)s)"
	total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
	if [ "$f" != 0 ] || [ "$rc" != 0 ] || [ "$p" = 0 ]; then
		failed=1
		grep -a -E '^(CLU-SETUP-FAILED|\s*--- FAIL|\s+[a-z_]+_test\.go:[0-9]+:)' "$log.txt" | head -n 60 | sed 's/^/    /'
	fi
done
done
echo "test-vm: $boots boots ($(echo $kernels | wc -w) kernels, $(echo $layouts | wc -w) layouts) in $(( $(date +%s) - all_start ))s"
echo "test-vm: $total_p passed, $total_f failed, $total_s skipped"
exit $failed
