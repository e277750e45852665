#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the test kernel under QEMU with virtme-ng (the host's root over 9p,
# so the guest has the host's dmsetup, lvm2 and fio) and run one command.
#
# Usage: vm-run.sh [-t SECS] [-p SECS] [-d DISK]... [-c CPUS] [-i] [-o OUTDIR] [-k REGEX] KDIR -- CMD...
#
# The command's stdout goes to OUTDIR/stdout, the guest console (kernel log)
# to OUTDIR/console. Past the time limit the guest is killed and the script
# exits 124; so it does with -p when one part of the command (from one
# stdout line starting "### " to the next) runs longer than -p's SECS. With
# -k, the guest is killed as soon as a kernel log line matches REGEX (an
# extended grep pattern), and the script exits 126.
# Afterwards the console is scanned for kernel splats; any found are
# printed and the script exits 125 (126 if stopped by -k). Otherwise it
# exits with the command's status.
#
# -i (benchmarks, under TCG): one vCPU and QEMU's -icount shift=3,sleep=off,
# so that guest time counts instructions and a run repeats whatever else
# the host does. VM_QEMU_OPTS adds QEMU options to it (make bench-profile:
# a TCG plugin).

. "$(dirname "$0")/lib.sh"

limit=300 cpus=2 mem=2G out= stop_re= part_limit= icount=
disks=()
while getopts "t:p:d:c:im:o:k:" opt; do
	case $opt in
	t) limit=$OPTARG ;;
	d) disks+=(--disk "$OPTARG") ;;
	c) cpus=$OPTARG ;;
	i) icount=1 ;;
	m) mem=$OPTARG ;;
	o) out=$OPTARG ;;
	p) part_limit=$OPTARG ;;
	k) stop_re=$OPTARG ;;
	*) die "usage: vm-run.sh [-t secs] [-p secs] [-d disk] [-c cpus] [-i] [-m mem] [-o outdir] [-k regex] KDIR -- CMD" ;;
	esac
done
shift $((OPTIND - 1))
kdir=$1
shift
[ "${1:-}" = "--" ] && shift
out=${out:-$(mktemp -d /tmp/dm-snap-vm.XXXXXX)}
mkdir -p "$out"

# KVM only where the CPU can do it; TCG otherwise (KVM hangs without vmx/svm).
accel=(--disable-kvm)
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then
	accel=()
fi
if [ -n "$icount" ] && [ ${#accel[@]} -gt 0 ]; then
	cpus=1
	accel+=(--qemu-opts "-icount shift=3,sleep=off${VM_QEMU_OPTS:+ $VM_QEMU_OPTS}")
fi

# setsid + kill of the whole group: vng forks QEMU, which must die with it.
rc=0 stopped= part_over=
setsid timeout --kill-after=10 "$limit" \
	vng --run "$kdir" "${accel[@]}" --cpus "$cpus" --memory "$mem" --verbose \
	"${disks[@]}" --exec "$*" \
	> "$out/stdout" 2> "$out/console" < /dev/null &
pid=$!
stop_guest() {
	kill -TERM -- -"$pid" 2>/dev/null || true
	sleep 2
	kill -KILL -- -"$pid" 2>/dev/null || true
}
# -k: watch the kernel log (printk time stamps, as scan_console) and stop
# the whole group, QEMU included, at the first match. -p: time each part.
parts=0 part_t0=$SECONDS
while [ -n "$stop_re$part_limit" ] && kill -0 "$pid" 2>/dev/null; do
	if [ -n "$stop_re" ] &&
		grep -qaE "^\[ *[0-9]+\.[0-9]+\] .*($stop_re)" "$out/console"; then
		log "guest stopped: its kernel log matches '$stop_re'"
		stopped=1
		stop_guest
		break
	fi
	if [ -n "$part_limit" ]; then
		n=$(grep -ac '^### ' "$out/stdout" 2> /dev/null || true)
		[ "$n" = "$parts" ] || parts=$n part_t0=$SECONDS
		if [ $((SECONDS - part_t0)) -gt "$part_limit" ]; then
			log "guest killed: '$(grep -a '^### ' "$out/stdout" | tail -n1)' ran longer than ${part_limit}s"
			part_over=1
			stop_guest
			break
		fi
	fi
	sleep 1
done
wait "$pid" || rc=$?
[ -z "$part_over" ] || rc=124

if [ -n "$stopped" ]; then
	# The splat scan still prints what the kernel reported.
	scan_console "$out/console" || true
	exit 126
fi
if [ $rc = 124 ] || [ $rc = 137 ]; then
	[ -n "$part_over" ] || log "guest killed after ${limit}s"
	log "console tail:"
	tail -n 40 "$out/console" >&2
	rc=124
fi
if ! scan_console "$out/console"; then
	[ $rc = 124 ] || rc=125
fi
exit $rc
