#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench: the benchmark of record. C against ours, with the raw
# device, dm-linear and a dm-thin snapshot as references, each workload on
# the same devices in the same boot; writes bench/results/<date>-<kernel>.md
# and a plot beside it (.png).
#
# Two guests, on the benchmark kernel (no lockdep):
# - one vCPU whose time counts instructions (vm-run.sh -i: QEMU -icount
#   shift=3,sleep=off, so the figures repeat whatever the host does): the
#   fio workloads of scripts/bench-fio-guest.sh with one job, then the COW
#   throttle workloads of scripts/bench-throttle-guest.sh;
# - BENCH_CPUS vCPUs (2) in real time (multi-threaded TCG: noisy, so its
#   figures are compared only as ratios within the run): the same
#   workloads with 1, 2 and 4 jobs, 4 KiB chunks, one snapshot.
# BENCH_PARTS ("icount throttle mttcg") picks the parts; the knobs of the
# guest scripts (BENCH_IMPLS, BENCH_BASE_KO, BENCH_REFS, BENCH_CHUNKS,
# BENCH_SNAPS, BENCH_SIZE, BENCH_ROUNDS, BENCH_SECONDS, ...) go through.

. "$(dirname "$0")/lib.sh"

PARTS=${BENCH_PARTS:-icount throttle mttcg}
# The kernel without lockdep (kernel/configs/dm_snap_rs_bench.config);
# BENCH_FLAVOR=default for the test kernel.
export GUEST_FLAVOR=${BENCH_FLAVOR:-bench}
out=$(mktemp /tmp/dm-snap-bench.XXXXXX)
knobs=
for v in BENCH_IMPLS BENCH_BASE_KO BENCH_REFS BENCH_CHUNKS BENCH_SNAPS BENCH_SIZE \
	BENCH_ROUNDS BENCH_SNAP_ROUNDS BENCH_SECONDS BENCH_THRESHOLD BENCH_READ_DELAY \
	BENCH_FOLLOW_AFTER BENCH_WRITE_DELAY BENCH_WRITERS BENCH_REWRITE_IOPS \
	BENCH_THROTTLE_WORKLOADS BENCH_COW_DELAY BENCH_SLOW_SIZE; do
	[ -z "${!v:-}" ] || knobs+="$v='${!v}' "
done

# The guest does not inherit this environment: the knobs go on its
# command, through env(1).
cmd=
case " $PARTS " in *" icount "*) cmd="bash scripts/bench-fio-guest.sh" ;; esac
case " $PARTS " in *" throttle "*) cmd+="${cmd:+ && }bash scripts/bench-throttle-guest.sh" ;; esac
if [ -n "$cmd" ]; then
	GUEST_VM_OPTS=-i guest_job bench 7200 \
		"env $knobs BENCH_MODE=icount bash -c '$cmd'" >> "$out"
fi
case " $PARTS " in *" mttcg "*)
	GUEST_VM_OPTS="-c ${BENCH_CPUS:-2}" guest_job bench-jobs 3600 \
		"env $knobs BENCH_MODE=mttcg BENCH_JOBS='1 2 4' BENCH_CHUNKS=8 BENCH_SNAPS=1 \
BENCH_REFS='${BENCH_REFS:-raw linear}' BENCH_ROUNDS=${BENCH_JOBS_ROUNDS:-3} \
bash scripts/bench-fio-guest.sh" >> "$out"
	;;
esac

release=$(make_kernel -s kernelrelease 2> /dev/null || echo unknown)
report=$TOP/bench/results/$(date +%Y-%m-%d)-$release.md
accel=$(grep -qwE 'vmx|svm' /proc/cpuinfo && echo KVM || echo TCG)
"$(plot_python)" "$TOP/scripts/bench-report.py" "$out" "$release" \
	"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" "$accel" \
	"${report%.md}.png" "$GUEST_FLAVOR" > "$report"
log "report: $report"
cat "$report"
