#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run every test: host unit tests, static checks and the guest selftests
# against one implementation (DM_SNAP_IMPL=rust, the default, or c).
# Ends with the line "N passed, N failed, N skipped".
#
# DM_SNAP_GROUPS="table data" limits the guest groups run.
#
# DM_SNAP_SOAK=1 (make soak): the long forms of what make check runs
# shorter, and only those: a 10-minute fuzz run, and the faults, throttle,
# stress, compat and diff groups with every allocation point of a table
# load failed, three times the throttle rounds, two minutes of fio stress
# and ten of the model-checked run, every point of a logged run replayed,
# and 1000 differential sequences.
# No host tests or lints.

. "$(dirname "$0")/lib.sh"

IMPL=${DM_SNAP_IMPL:-rust}
# DM_SNAP_FLAVOR=debug: the KASAN/kmemleak kernel (make check-debug); the
# lints and host tests, which do not depend on the kernel, are left out.
FLAVOR=${DM_SNAP_FLAVOR:-default}
SOAK=${DM_SNAP_SOAK:-0}
if [ "$SOAK" = 1 ]; then
	GUEST_GROUPS=${DM_SNAP_GROUPS:-faults throttle stress compat diff lvm-workflows}
else
	GUEST_GROUPS=${DM_SNAP_GROUPS:-module table data status full params review merge faults corrupt compat diff persist crash lvm throttle stress}
fi
RESULTS=$(mktemp -d /tmp/dm-snap-check.XXXXXX)
pass=0 fail=0 skip=0 KDIR=

result() { # result ok|fail|skip NAME [REASON]
	main_result "$@"
}
main_result() {
	case $1 in
	ok)	pass=$((pass + 1)); echo "PASS: $2" ;;
	skip)	skip=$((skip + 1)); echo "SKIP: $2 ($3)" ;;
	*)	fail=$((fail + 1)); echo "FAIL: $2${3:+ ($3)}" ;;
	esac
}

# timed NAME SECONDS_SINCE: prints how long NAME took, so the next slow
# group is seen.
timed() {
	echo "TIME: $1 $(($SECONDS - $2))s"
}

summary() {
	timed total 0
	echo
	echo "implementation: $IMPL, kernel: $FLAVOR ($KDIR); logs in $RESULTS"
	echo "$pass passed, $fail failed, $skip skipped"
	[ "$fail" = 0 ]
}

# ---- set-up and build ----------------------------------------------------------
"$TOP/scripts/setup.sh" || { result fail "set-up"; summary; exit 1; }
# Again: set-up may just have installed the toolchain lib.sh looks for.
. "$TOP/scripts/lib.sh"
if ! KDIR=$("$TOP/scripts/build-kernel.sh" "$FLAVOR"); then
	result fail "kernel build, our module in tree without warnings"; summary; exit 1
fi
result ok "kernel build, our module in tree without warnings"

timed "set-up and build" 0

# ---- host tests, fuzz, lints: beside the guest --------------------------------------
# They need no guest, and the guest (TCG) keeps about one core busy: they
# run beside the guest boots at the lowest priority, and their lines are
# printed, and their results counted, once they and the boots are done.
# The test-only buggy throttle module is built there too.

# fuzz SECONDS TARGET: a fuzz run of the on-disk parser (disk_metadata) or
# of the exception runs against their model (exception_runs).
fuzz() {
	local t0=$SECONDS
	if "$TOP/scripts/fuzz.sh" "$1" "$2" > "$RESULTS/fuzz-$2.log" 2>&1; then
		result ok "$(tail -n1 "$RESULTS/fuzz-$2.log" | sed 's/ (log:.*//')"
	else
		tail -n 20 "$RESULTS/fuzz-$2.log"
		result fail "fuzz: $2 ($1 s)"
	fi
	timed "fuzz $2 (build included)" $t0
}

# lint NAME CMD...: a check passes when CMD succeeds and prints no warning.
lint() {
	local name=$1 f t0=$SECONDS
	shift
	f=$RESULTS/lint-${name// /-}.log
	if "$@" > "$f" 2>&1 && ! grep -qE '^(warning|error)' "$f"; then
		result ok "lint: $name"
	else
		head -n 40 "$f"
		result fail "lint: $name" "see $f"
	fi
	timed "lint: $name" $t0
}

# clippy-driver builds without MIR optimisation, so what it builds differs
# from what rustc builds (small functions are no longer inlinable across
# crates, the kernel crate's libkernel.rmeta and export list change). What
# the guest tests, and what vmlinux and the module link, must stay rustc's.
# module_copy DIR MAKE_ARGS...: builds a copy of the module in DIR, so
# that the module under test stays the one make module made.
module_copy() {
	local d=$1
	shift
	rm -rf "$d"
	mkdir -p "$d"
	cp -r "$TOP/Kbuild" "$TOP/Makefile" "$TOP/drivers" "$d/"
	make_kernel M="$d" clean > /dev/null 2>&1 || true
	make_kernel M="$d" "$@" modules
}
# clippy_module: the module's lint builds a copy of it.
clippy_module() { module_copy "$CACHE/clippy-module" CLIPPY=1; }
# clippy_kernel: the kernel crate's lint rebuilds it and the crates it uses
# in the tree; their objects are set aside before and put back after, times
# included, so nothing is built again (as it was before: the kernel crate
# twice and vmlinux relinked).
clippy_kernel() {
	local keep=$CACHE/rust-before-clippy rc=0
	rm -rf "$keep"
	cp -a "$KDIR/rust" "$keep"
	make_kernel CLIPPY=1 rust/kernel.o || rc=$?
	rm -rf "$KDIR/rust"
	mv "$keep" "$KDIR/rust"
	return $rc
}

# A test-only build of ours that sleeps for the throttle with the origin
# lock held, for the proof at the end.
BUGGY=
if [ "$FLAVOR" = default ] && [ "$IMPL" = rust ] && [[ " $GUEST_GROUPS " == *" throttle "* ]]; then
	BUGGY=$CACHE/buggy-throttle
fi
build_buggy() { module_copy "$BUGGY" DM_SNAP_BUGGY_THROTTLE=1; }

host_checks() {
	local t0 r
	if [ "$SOAK" = 1 ]; then
		fuzz "${DM_SNAP_FUZZ_SECONDS:-600}" disk_metadata
		fuzz "${DM_SNAP_FUZZ_SECONDS:-600}" exception_runs
	else
		t0=$SECONDS
		if (cd "$TOP/host" && cargo test --quiet) > "$RESULTS/host-tests.log" 2>&1; then
			n=$(awk '/^test result:/ {s += $4} END {print s + 0}' "$RESULTS/host-tests.log")
			result ok "host unit tests ($n run)"
		else
			tail -n 30 "$RESULTS/host-tests.log"
			result fail "host unit tests"
		fi
		timed "host unit tests (build included)" $t0

		# Short fuzz runs (scripts/fuzz.sh or make soak for longer ones).
		fuzz 20 disk_metadata
		fuzz 10 exception_runs

		lint "rustfmtcheck (kernel tree with overlay)" make_kernel rustfmtcheck
		lint "rustfmt --check (module)" "$RUSTFMT" --check --config-path "$KDIR/.rustfmt.toml" \
			$(find "$TOP/drivers" -name '*.rs')
		lint "clippy (module, CLIPPY=1)" clippy_module
		lint "clippy (kernel crate with overlay, CLIPPY=1)" clippy_kernel
		# Should anything be out of date after all, it is built now.
		t0=$SECONDS
		"$TOP/scripts/build-kernel.sh" "$FLAVOR" > "$RESULTS/kernel-rebuild.log" 2>&1 ||
			result fail "kernel crate rebuilt after clippy" "see $RESULTS/kernel-rebuild.log"
		timed "kernel up to date after clippy" $t0
		lint "rustdoc (kernel crate with overlay)" make_kernel rustdoc
		lint "checkpatch --strict (patches and overlay)" "$TOP/scripts/checkpatch.sh" "$KDIR"
		lint "cargo fmt --check (host)" cargo fmt --manifest-path "$TOP/host/Cargo.toml" --check
		lint "cargo clippy (host)" cargo clippy --quiet --manifest-path "$TOP/host/Cargo.toml" --all-targets -- -D warnings
		lint "cargo fmt --check (fuzz targets)" cargo fmt --manifest-path "$TOP/host/fuzz/Cargo.toml" --check
		"$TOP/scripts/unsafe-audit.sh" > "$RESULTS/unsafe-audit.log" 2>&1 && r=ok || r=fail
		cat "$RESULTS/unsafe-audit.log"
		result $r "unsafe audit"
	fi
	if [ -n "$BUGGY" ]; then
		t0=$SECONDS
		if build_buggy > "$RESULTS/buggy-build.log" 2>&1; then
			touch "$RESULTS/buggy-built"
		else
			tail -n 20 "$RESULTS/buggy-build.log"
			result fail "throttle: build of the buggy test module"
		fi
		timed "build of the buggy throttle module" $t0
	fi
}

host_pid=
if [ "$FLAVOR" = default ]; then
	(
		renice -n 19 -p "$BASHPID" > /dev/null 2>&1 || true
		ionice -c 2 -n 7 -p "$BASHPID" > /dev/null 2>&1 || true
		# Results go to host.results too, to be counted at the end.
		result() { echo "$1" >> "$RESULTS/host.results"; main_result "$@"; }
		t0=$SECONDS
		host_checks
		timed "host tests, fuzz and lints (beside the guest)" $t0
	) > "$RESULTS/host.out" 2>&1 &
	host_pid=$!
	trap '[ -z "$host_pid" ] || kill "$host_pid" 2> /dev/null || true' EXIT
fi

# host_done: wait for the host checks; print and count their results.
host_done() {
	[ -n "$host_pid" ] || return 0
	wait "$host_pid" || result fail "host checks ended" "status $?"
	host_pid=
	cat "$RESULTS/host.out"
	touch "$RESULTS/host.results"
	pass=$((pass + $(grep -c '^ok$' "$RESULTS/host.results" || true)))
	skip=$((skip + $(grep -c '^skip$' "$RESULTS/host.results" || true)))
	fail=$((fail + $(grep -vcE '^(ok|skip)$' "$RESULTS/host.results" || true)))
}

# ---- guest selftests -----------------------------------------------------------------
# count_group NAME STDOUT: the group's KTAP lines as results.
count_group() {
	local group=$1 stdout=$2 planned seen=0 line name
	sed 's/^/    /' "$stdout"
	planned=$(sed -n 's/^1\.\.\([0-9]*\).*/\1/p' "$stdout" | head -n1)
	while IFS= read -r line; do
		case $line in
		"ok "*"# SKIP"*)
			seen=$((seen + 1))
			name=${line#ok [0-9]* }
			result skip "$group: ${name%% # SKIP*}" "${line#*# SKIP }" ;;
		"ok "*) seen=$((seen + 1)); result ok "$group: ${line#ok [0-9]* }" ;;
		"not ok "*) seen=$((seen + 1)); result fail "$group: ${line#not ok [0-9]* }" ;;
		esac
	done < "$stdout"
	if [ -z "$planned" ] || [ "$seen" -lt "$planned" ]; then
		result fail "$group: all planned tests ran" "$seen of ${planned:-?}"
	fi
}

# count_guest NAME RC LIMIT OUT: how the guest run ended (LIMIT in words).
count_guest() {
	case $2 in
	0|1) ;; # 1: some test failed, counted already
	124) result fail "$1: guest finished within $3" ;;
	125) result fail "$1: guest kernel log clean" "splat, see $4/console" ;;
	*) result fail "$1: guest run" "exit status $2, see $4/console" ;;
	esac
}

# run_group GROUP LIMIT [PHASE] [vm-run options...]: one group, one boot.
run_group() {
	local group=$1 limit=$2 phase=${3:-} out rc=0 t0=$SECONDS
	shift 3 || shift $#
	out=$RESULTS/$group${phase:+-$phase}
	"$TOP/scripts/vm-run.sh" -t "$limit" -o "$out" "$@" "$KDIR" -- \
		"cd $TOP && DM_SNAP_IMPL=$IMPL KDIR=$KDIR $GUEST_ENV bash tests/dm-snapshot/run.sh $group $phase" || rc=$?
	# The crash group's first boot ends in a hard reset, which the guest
	# runner reports as status 255.
	if [ "$group$phase" = crash1 ] && [ $rc = 255 ] &&
		grep -q '^# stopping the guest hard' "$out/stdout"; then
		rc=0
	fi
	count_group "$group" "$out/stdout"
	count_guest "$group" "$rc" "${limit}s" "$out"
	timed "$group${phase:+ phase $phase} (boot included)" $t0
}

# run_batch LIMIT GROUP...: the groups one after another in one boot (a
# boot takes a minute under TCG, minutes on the debug kernel), each counted
# as its own. With GROUP_LIMIT, each group (the first with the boot) may
# run that long at most.
run_batch() {
	local limit=$1 out=$RESULTS/batch-$2 rc=0 g t0=$SECONDS
	shift
	# Short: the command travels on the guest's kernel command line. Each
	# group's start is stamped in guest seconds since boot.
	"$TOP/scripts/vm-run.sh" -t "$limit" ${GROUP_LIMIT:+-p "$GROUP_LIMIT"} -o "$out" "$KDIR" -- \
		"cd $TOP && export DM_SNAP_IMPL=$IMPL KDIR=$KDIR $GUEST_ENV && for g in $* end; do echo \"### group \$g \$(cut -d. -f1 /proc/uptime)\"; [ \$g = end ] || bash tests/dm-snapshot/run.sh \$g; done" || rc=$?
	for g in "$@"; do
		mkdir -p "$RESULTS/$g"
		awk -v g="$g" '$1 == "###" && $3 == g { on = 1; next } /^### group / { on = 0 } on' \
			"$out/stdout" > "$RESULTS/$g/stdout"
		count_group "$g" "$RESULTS/$g/stdout"
		awk -v g="$g" '$1 == "###" { if (t != "") { print "TIME: " g " " $4 - t "s"; exit } if ($3 == g) t = $4 }' \
			"$out/stdout"
	done
	count_guest "groups in one boot ($*)" "$rc" "${limit}s${GROUP_LIMIT:+, ${GROUP_LIMIT}s a group}" "$out"
	timed "boot of $* (groups and boot)" $t0
}

PERSIST_LIMIT=300
# make check: half a minute of fio stress and 45 s of the model-checked
# run (make soak: two minutes and ten), and a table load fails every 3rd
# of its allocation points (make soak: every one).
GUEST_ENV="DM_SNAP_STRESS_SECONDS=${DM_SNAP_STRESS_SECONDS:-30} DM_SNAP_MODEL_SECONDS=${DM_SNAP_MODEL_SECONDS:-45}"
GUEST_ENV+=" DM_SNAP_FAULT_STEP=${DM_SNAP_FAULT_STEP:-3}"
# The differential test: 100 sequences (make soak: 1000), to keep make
# check within its time on a new machine.
GUEST_ENV+=" DM_SNAP_DIFF_SEQUENCES=${DM_SNAP_DIFF_SEQUENCES:-100}"
# A group may run 15 minutes; all of them 75.
BATCH_LIMIT=${DM_SNAP_BATCH_LIMIT:-4500} GROUP_LIMIT=900
if [ "$SOAK" = 1 ]; then
	GUEST_ENV="DM_SNAP_STRESS_SECONDS=${DM_SNAP_STRESS_SECONDS:-120} DM_SNAP_MODEL_SECONDS=${DM_SNAP_MODEL_SECONDS:-600}"
	GUEST_ENV+=" DM_SNAP_FAULT_STEP=${DM_SNAP_FAULT_STEP:-1}"
	# Every entry of a log of 400 writes replayed.
	GUEST_ENV+=" DM_SNAP_REPLAY_OPS=${DM_SNAP_REPLAY_OPS:-400} DM_SNAP_REPLAY_POINTS=${DM_SNAP_REPLAY_POINTS:-all}"
	GUEST_ENV+=" DM_SNAP_DIFF_SEQUENCES=${DM_SNAP_DIFF_SEQUENCES:-1000}"
	# Three times the throttle's rounds of snapshots coming and going.
	GUEST_ENV+=" DM_SNAP_THROTTLE_ROUNDS=${DM_SNAP_THROTTLE_ROUNDS:-36}"
fi
if [ "$FLAVOR" = debug ]; then
	PERSIST_LIMIT=1200 BATCH_LIMIT=${DM_SNAP_DEBUG_LIMIT:-5400} GROUP_LIMIT=
	# KASAN and kmemleak slow the guest down five times and more; what they
	# look for shows in a shorter run too: shorter stress and throttle runs
	# (with 2 minutes a throttle round, not 30 s), every 4th allocation point
	# of a table load failed, and no udev (each uevent's rules take seconds).
	GUEST_ENV="DM_SNAP_STRESS_SECONDS=${DM_SNAP_STRESS_SECONDS:-45} DM_SNAP_MODEL_SECONDS=${DM_SNAP_MODEL_SECONDS:-60}"
	GUEST_ENV+=" DM_SNAP_THROTTLE_ROUNDS=${DM_SNAP_THROTTLE_ROUNDS:-4}"
	GUEST_ENV+=" DM_SNAP_THROTTLE_ROUND_SECONDS=120 DM_SNAP_FAULT_STEP=${DM_SNAP_FAULT_STEP:-4} DM_SNAP_NO_UDEV=1"
	GUEST_ENV+=" DM_SNAP_DIFF_SEQUENCES=${DM_SNAP_DIFF_SEQUENCES:-10}"
	# The review group's handover under writes: writers long enough to
	# outlast a resume on that kernel, a limit to match, and fewer copies
	# a second to wait for before the reload.
	GUEST_ENV+=" DM_SNAP_REVIEW_BUSY_SECONDS=150 DM_SNAP_REVIEW_RESUME_LIMIT_MS=60000 DM_SNAP_REVIEW_BUSY_RATE=10"
	# Its throttle slot test: a metadata write held long enough for the
	# third write to start on that kernel.
	GUEST_ENV+=" DM_SNAP_REVIEW_COMMIT_DELAY_MS=30000"
fi

# Every group but persist and crash in one boot (a boot costs a minute or
# more under TCG, minutes on the debug kernel); each is still counted, and
# timed, on its own.
batch= rest=
for g in $GUEST_GROUPS; do
	case $g in persist | crash) rest+=" $g" ;; *) batch+=" $g" ;; esac
done
[ -z "$batch" ] || run_batch "$BATCH_LIMIT" $batch

for g in $rest; do
	# Two boots on one disk: the second sees what the first left (crash:
	# the first stops the guest hard in the middle of writes).
	disk=$RESULTS/$g.img
	truncate -s 128M "$disk"
	run_group "$g" "$PERSIST_LIMIT" 1 -d "$disk"
	run_group "$g" "$PERSIST_LIMIT" 2 -d "$disk"
done

host_done

# ---- the throttle selftest catches the 2019 deadlock ---------------------------
# A test-only build of ours that sleeps for the throttle with the origin lock
# held must fail the deadlock test. Its origin writers then sleep with the
# lock held while a snapshot's load waits for it, and the hung-task detector
# reports them (10 s into the test's deadlock): the test fails on that
# report, as it fails on a missed round deadline. The guest is stopped at
# the report: nothing after it can undo the failure, and the deadlock only
# ends with the time limit.
if [ -n "$BUGGY" ] && [ -f "$RESULTS/buggy-built" ]; then
	t0=$SECONDS
	out=$RESULTS/throttle-buggy rc=0
	"$TOP/scripts/vm-run.sh" -t 240 -k 'blocked for more than' -o "$out" "$KDIR" -- \
		"cd $TOP && DM_SNAP_IMPL=rust DM_SNAP_KO=$BUGGY/drivers/md/dm_snapshot_rs.ko DM_SNAP_THROTTLE_ROUNDS=10 KDIR=$KDIR bash tests/dm-snapshot/run.sh throttle" || rc=$?
	# It counts only once the group runs (its plan is out): not if the
	# guest did not boot or the module did not load.
	how=
	if grep -q '^not ok 1 ' "$out/stdout"; then
		how="deadlock test failed"
	elif [ $rc = 126 ] && grep -q '^1\.\.[0-9]' "$out/stdout"; then
		how="hung-task report: $(grep -aom1 'task [^ ]* blocked for more than [0-9]* seconds' "$out/console")"
	elif [ $rc = 124 ] && grep -q '^1\.\.[0-9]' "$out/stdout"; then
		how="the deadlock test hung past the time limit"
	fi
	if [ -n "$how" ]; then
		result ok "throttle: deadlock test fails a build that sleeps holding the origin lock ($how)"
	else
		result fail "throttle: deadlock test fails a build that sleeps holding the origin lock" \
			"status $rc, no failure of the deadlock test; see $out"
	fi
	timed "throttle with the buggy build (boot included)" $t0
fi

summary
