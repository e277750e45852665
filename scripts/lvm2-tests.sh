#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make lvm2-check: LVM2's own test scripts that use classic snapshots, run
# through LVM2's harness in a guest, once against the C dm-snapshot.ko and
# once against ours, then a table of each script's result on both.
#
# Usage: lvm2-tests.sh
#   LVM2_TESTS="snapshot-usage lvcreate-small-snap"   only these scripts
#   LVM2_IMPLS="c rust"      the implementations, in this order (one boot each)
#   LVM2_TIMEOUT=600         a script is killed after this many silent seconds
#   LVM2_GUEST_LIMIT=N       one guest boot's time limit, in seconds
#                            (default: 15 minutes a script, plus 5)
#
# The source is Debian's lvm2 source package (2.03.16, its pristine
# tarball), built once into $CACHE/lvm2-<version> (DM_SNAP_CACHE, as the
# kernel's cache) and used from there in the guest, which sees the host's
# root. The scripts are those of test/shell that make a classic snapshot
# (lvcreate -s/--snapshot with a size, not a thin one), found by grep;
# those that need thin provisioning are left out (thin snapshots are not
# ours). The runner is test/lib/runner with the ndev-vanilla flavour (what
# "make check_local" runs: private /dev, no udev). Results go to
# $CACHE/lvm2-results/<date>/: report.txt and, for each implementation,
# the runner's logs (one .txt per script) and the guest's console.
#
# Nothing else changes between the two runs: for ours, dm_snapshot_rs.ko
# is loaded before the harness starts and modprobe is kept from loading
# the C module (LVM2 modprobes dm-snapshot); the run is void if it loaded
# anyway.
#
# In the guest: lvm2-tests.sh guest IMPL LVM2_DIR SCRIPTS...
# The report again from a results directory: lvm2-tests.sh report DIR

if [ "${1:-}" = guest ]; then
	set -uo pipefail
	impl=$2 lvm2=$3
	shift 3
	: "${KDIR:?}" "${TOP:?}"
	# The host's root is read-only here: the results are written to a
	# tmpfs, and sent to the host as a tar file on stdout at the end.
	mkdir -p /run/lvm2-results
	mount -t tmpfs lvm2-results /run/lvm2-results
	out=/run/lvm2-results/$impl
	mkdir -p "$out"
	case $impl in
	rust)	# LVM2's modprobe of dm-snapshot (or an alias: dm-snapshot-origin,
		# dm-snapshot-merge) must not bring the C module in.
		mkdir -p /run/modprobe.d
		echo "install dm_snapshot /bin/false" > /run/modprobe.d/dm-snap-rs-lvm2.conf
		insmod "$KDIR/drivers/md/dm_snapshot_rs.ko" || { echo "### insmod of ours failed"; exit 1; } ;;
	c)	rm -f /run/modprobe.d/dm-snap-rs-lvm2.conf
		insmod "$KDIR/drivers/md/dm-snapshot.ko" || { echo "### insmod of C failed"; exit 1; } ;;
	*)	echo "### unknown implementation $impl"; exit 1 ;;
	esac
	{ echo "implementation $impl"; grep -E '^dm_snapshot' /proc/modules; dmsetup targets; } > "$out/env.txt"
	cat "$out/env.txt"
	# The harness's devices (loop files) go on a tmpfs of ours: it needs
	# one that allows device nodes (its private /dev).
	mkdir -p /run/lvm2-test
	mount -t tmpfs -o size=1200m,mode=0755 lvm2-test /run/lvm2-test
	cd "$lvm2/test" || exit 1
	# One runner a script, each into its own directory; after each, all
	# results so far go to the host (as a tar file between two marker
	# lines on stdout; the host takes the last), so a guest stopped at
	# its time limit still reports the scripts it ran.
	for s in "$@"; do
		echo "### $s"
		mkdir -p "$out/$s"
		rc=0
		# TEST_DIR, TEST_DEV and QA_CHECK_FS: fstests' (and LTP's) leave
		# for mkfs.xfs to make the small filesystems of the scripts
		# (xfsprogs 5.19 and later refuse those under 300 MB otherwise).
		TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 \
		LVM_TEST_DIR=/run/lvm2-test ./lib/runner --testdir . --outdir "$out/$s" \
			--flavours ndev-vanilla --only "shell/$s.sh" --verbose \
			--timeout "${LVM2_TIMEOUT:-600}" || rc=$?
		cat "$out/$s/list" >> "$out/list" 2>/dev/null
		if [ "$impl" = rust ] && grep -q '^dm_snapshot ' /proc/modules; then
			echo "### VOID: the C dm_snapshot module was loaded during the run of ours"
			touch "$out/void"
		fi
		echo "### $s: runner exit $rc"
		echo "### results"
		tar -C "$out" -cJ . | base64 -w 0
		echo
		echo "### end of results"
	done
	exit 0
fi

. "$(dirname "$0")/lib.sh"

LVM2_VERSION=2.03.16
LVM2=$CACHE/lvm2-$LVM2_VERSION
IMPLS=${LVM2_IMPLS:-c rust}

# ---- the report --------------------------------------------------------------------
# extract IMPL: the last results the guest sent, into $RES/IMPL.
extract() {
	rm -rf "$RES/$1"
	mkdir -p "$RES/$1"
	awk '/^### results$/ {b = ""; on = 1; next} /^### end of results$/ {last = b; on = 0; next}
		on {b = b $0} END {print last}' "$RES/$1-vm/stdout" |
		base64 -d 2>/dev/null | tar -C "$RES/$1" -xJ 2>/dev/null ||
		log "$1: no results from the guest (see $RES/$1-vm)"
}

# result IMPL SCRIPT: the runner's word for the script, with the reason
# of a skip.
result() {
	local d=$RES/$1 r why
	r=$(awk -v t="ndev-vanilla:shell/$2.sh" '$1 == t {print $2}' "$d/list" 2>/dev/null | tail -n1)
	if [ -z "$r" ]; then
		r="not run"
		[ "$(cat "$RES/$1-vm/rc" 2>/dev/null)" != 124 ] || r="not run (guest time limit)"
	fi
	[ ! -e "$d/void" ] || r="void"
	if [ "$r" = skipped ]; then
		why=$(cat "$d/$2/ndev-vanilla:shell_$2.sh.txt" "$d/ndev-vanilla:shell_$2.sh.txt" 2>/dev/null | grep -a "TEST SKIPPED:" |
			head -n1 | sed 's/.*TEST SKIPPED: *//')
		r="skipped${why:+ ($why)}"
	fi
	echo "$r"
}

# report: the table, printed and in $RES/report.txt.
report() {
	local impl s line w r rc regress=()
	mapfile -t SCRIPTS < "$RES/scripts"
	IMPLS=$(cat "$RES/impls")
	for impl in $IMPLS; do
		extract "$impl"
	done
	{
		echo "LVM2 $LVM2_VERSION test/shell, flavour ndev-vanilla, kernel $(cat "$RES/kernel")"
		echo "results: $RES (runner logs: <impl>/<script>/*.txt)"
		for impl in $IMPLS; do
			rc=$(cat "$RES/$impl-vm/rc" 2>/dev/null || echo '?')
			case $rc in
			124) rc="$rc (time limit)" ;;
			125) rc="$rc (kernel splat, see $RES/$impl-vm/console)" ;;
			esac
			echo "guest $impl: status $rc"
		done
		echo
		line=$(printf '%-36s' script)
		for impl in $IMPLS; do
			line+=$(printf ' %-30s' "$impl")
		done
		echo "$line"
		for s in "${SCRIPTS[@]}"; do
			line=$(printf '%-36s' "$s")
			for impl in $IMPLS; do
				line+=$(printf ' %-30s' "$(result "$impl" "$s")")
			done
			echo "$line"
		done
		echo
		for impl in $IMPLS; do
			printf '%s:' "$impl"
			for w in passed skipped failed timeout warnings; do
				printf ' %s %s,' "$(awk -v w=$w '$2 == w' "$RES/$impl/list" 2>/dev/null | wc -l)" "$w"
			done
			echo
		done
		if [[ " $IMPLS " == *" c "* ]] && [[ " $IMPLS " == *" rust "* ]]; then
			for s in "${SCRIPTS[@]}"; do
				r=$(result rust "$s")
				[ "$(result c "$s")" = passed ] && [ "$r" != passed ] &&
					[[ "$r" != "not run"* ]] && regress+=("$s")
			done
			echo "passed on C, run on ours and not passed: ${regress[*]:-none}"
		fi
	} | tee "$RES/report.txt"
}

if [ "${1:-}" = report ]; then
	RES=$(cd "$2" && pwd)
	report
	exit 0
fi

# ---- install, fetch, build ---------------------------------------------------
"$TOP/scripts/setup.sh"
. "$TOP/scripts/lib.sh"

# xfsprogs: for the scripts' own use in the guest (integrity's mkfs.xfs).
BUILD_DEBS=(libaio-dev libblkid-dev libudev-dev libedit-dev pkg-config dpkg-dev gcc make xfsprogs)
missing=()
for p in "${BUILD_DEBS[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing LVM2's build dependencies: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > "$CACHE/apt-lvm2.log" 2>&1 ||
		{ tail -n 20 "$CACHE/apt-lvm2.log" >&2; die "apt-get install failed"; }
fi

# fetch_lvm2: Debian's source package into $CACHE/lvm2-src. apt-get source
# needs a deb-src entry: one is added (once) for bookworm.
fetch_lvm2() {
	local src=$CACHE/lvm2-src list=/etc/apt/sources.list.d/dm-snap-rs-src.sources
	ls "$src"/lvm2_"$LVM2_VERSION".orig.tar.* > /dev/null 2>&1 && return 0
	if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		log "adding a deb-src entry: $list"
		cat > "$list" <<-EOF
		# Added by dm-snapshot-rs scripts/lvm2-tests.sh: apt-get source lvm2.
		Types: deb-src
		URIs: http://deb.debian.org/debian
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
		apt-get update -qq
	fi
	mkdir -p "$src"
	(cd "$src" && apt-get source --download-only lvm2 > apt-source.log 2>&1) ||
		(cd "$src" && apt-get update -qq && apt-get source --download-only lvm2 >> apt-source.log 2>&1) ||
		{ tail -n 20 "$src/apt-source.log" >&2; die "apt-get source lvm2 failed"; }
	ls "$src"/lvm2_"$LVM2_VERSION".orig.tar.* > /dev/null 2>&1 ||
		die "apt-get source gave no lvm2 $LVM2_VERSION (see $src)"
}

# build_lvm2: the tree and its test harness, once. The pristine tarball,
# not Debian's patched tree: its patch edits configure.ac, not configure.
build_lvm2() {
	[ -e "$LVM2/.dm-snap-built" ] && return 0
	fetch_lvm2
	log "building LVM2 $LVM2_VERSION and its test harness in $LVM2 (a few minutes)"
	rm -rf "$LVM2"
	mkdir -p "$LVM2"
	tar -xf "$CACHE"/lvm2-src/lvm2_"$LVM2_VERSION".orig.tar.* -C "$LVM2" --strip-components=1
	(
		cd "$LVM2"
		nice -n 10 ./configure --enable-dmeventd --enable-cmdlib --disable-selinux \
			--disable-systemd-journal --disable-app-machineid
		nice -n 10 make -j"$JOBS"
		nice -n 10 make -j"$JOBS" -C test
	) > "$CACHE/lvm2-build.log" 2>&1 ||
		{ tail -n 30 "$CACHE/lvm2-build.log" >&2; die "LVM2 build failed (see $CACHE/lvm2-build.log)"; }
	touch "$LVM2/.dm-snap-built"
}
build_lvm2

# select_scripts: test/shell's scripts that make a classic snapshot, less
# those that need thin provisioning.
select_scripts() {
	local f
	for f in "$LVM2"/test/shell/*.sh; do
		grep -E '^[^#]*lvcreate[^#]*( -s\b| -s[a-zA-Z]| --snapshot| -[a-zA-Z]+s\b| --type snapshot)' "$f" |
			grep -qvE '(-T|--thin|thinpool|--type thin)' || continue
		grep -q 'aux have_thin' "$f" && continue
		basename "$f" .sh
	done
}
if [ -n "${LVM2_TESTS:-}" ]; then
	SCRIPTS=($LVM2_TESTS)
else
	mapfile -t SCRIPTS < <(select_scripts)
fi
[ ${#SCRIPTS[@]} -gt 0 ] || die "no LVM2 test script selected"

KDIR=$("$TOP/scripts/build-kernel.sh")

# ---- the guest runs --------------------------------------------------------------
# Outside the repository, and not under /tmp (hidden from the guest).
RES=$CACHE/lvm2-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES"
printf '%s\n' "${SCRIPTS[@]}" > "$RES/scripts"
echo "$IMPLS" > "$RES/impls"
echo "$KDIR" > "$RES/kernel"
log "${#SCRIPTS[@]} LVM2 scripts, implementations: $IMPLS; results in $RES"
for impl in $IMPLS; do
	t0=$SECONDS
	log "$impl: booting the guest; console: $RES/$impl-vm/console"
	rc=0
	"$TOP/scripts/vm-run.sh" -t "${LVM2_GUEST_LIMIT:-$((300 + 900 * ${#SCRIPTS[@]}))}" -m 3G -o "$RES/$impl-vm" "$KDIR" -- \
		"cd $TOP && KDIR=$KDIR TOP=$TOP LVM2_TIMEOUT=${LVM2_TIMEOUT:-600} $TOP/scripts/lvm2-tests.sh guest $impl $LVM2 ${SCRIPTS[*]}" ||
		rc=$?
	echo "$rc" > "$RES/$impl-vm/rc"
	log "$impl: guest ended with status $rc after $((SECONDS - t0)) s"
	grep -a '^### ' "$RES/$impl-vm/stdout" | grep -v 'results$' >&2 || true
done
report
