# SPDX-License-Identifier: GPL-2.0
# Common settings for the build, boot and test scripts. Sourced, not run.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Caches live outside the repository.
# Not under /var or /tmp: virtme-ng hides those from the guest behind tmpfs.
CACHE=${DM_SNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-snap-rs}
mkdir -p "$CACHE"
KSRC_TARBALL=${KSRC_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
FRAGMENT=$TOP/kernel/configs/dm_snap_rs.config

# The Debian Rust toolchain has the library sources the kernel needs;
# the rustup one first on PATH does not.
export RUSTC=${RUSTC:-/usr/bin/rustc}
export RUSTDOC=${RUSTDOC:-/usr/bin/rustdoc}
export RUSTFMT=${RUSTFMT:-/usr/bin/rustfmt}
export CLIPPY_DRIVER=${CLIPPY_DRIVER:-/usr/bin/clippy-driver}
export RUST_LIB_SRC=${RUST_LIB_SRC:-$(ls -d /usr/src/rustc-*/library 2>/dev/null | sort -V | tail -n1)}
export BINDGEN=${BINDGEN:-$HOME/.cargo/bin/bindgen}
# bindgen 0.69.5 must use libclang 14.
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-14/lib}
# cargo's and pip's script directories (bindgen, vng), wherever pip puts them.
PY_SCRIPTS=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
export PATH=$HOME/.cargo/bin:${PY_SCRIPTS:+$PY_SCRIPTS:}$PATH

JOBS=${JOBS:-$(nproc)}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Short hash of the given files' contents (and names).
hash_files() {
	local f
	for f in "$@"; do
		printf '%s\n' "${f#"$TOP"/}"
		cat "$f"
	done | sha256sum | cut -c1-16
}

# Everything that keys the kernel build tree: source tarball, config fragment
# and the patch series (the overlay files themselves are synced into the tree
# and rebuilt incrementally by make).
kernel_key() {
	local src
	src=$(sha256sum "$KSRC_TARBALL" | cut -c1-16)
	echo "$src-$({ hash_files "$FRAGMENT"; patch_changes; } | sha256sum | cut -c1-16)"
}

# The changed lines of the patch series: what a patch does, not how its
# description or headers are worded.
patch_changes() {
	local p
	for p in $(overlay_patches); do
		grep -E '^[-+]' "$p" | grep -vE '^(\+\+\+|---)( |$)' || true
	done
}

overlay_patches() { ls "$TOP"/patches/*.patch 2>/dev/null | sort || true; }
overlay_files() {
	(cd "$TOP" && find rust/kernel rust/helpers -type f 2>/dev/null | sort)
}
# The target's sources, which the test kernel builds in tree
# (CONFIG_DM_SNAPSHOT_RUST=m), as the series puts them there.
target_files() {
	(cd "$TOP" && find drivers/md -name '*.rs' | sort)
}

# Points at the current kernel tree (source + in-tree build).
kernel_dir() { echo "$CACHE/linux-$(kernel_key)"; }

# The compiler a tree was configured with: empty for GCC, or an LLVM=
# suffix such as -14 (Debian's clang-14, ld.lld-14, ...) for the debug flavour.
tree_llvm() { cat "$KDIR/.dm-snap-llvm" 2>/dev/null || true; }

make_kernel() {
	make -C "$KDIR" -j"$JOBS" LLVM="$(tree_llvm)" RUSTC="$RUSTC" RUSTDOC="$RUSTDOC" \
		RUSTFMT="$RUSTFMT" CLIPPY_DRIVER="$CLIPPY_DRIVER" BINDGEN="$BINDGEN" \
		RUST_LIB_SRC="$RUST_LIB_SRC" "$@"
}

# Kernel log lines that fail a run: warnings, BUGs, oopses, lockdep reports,
# hung tasks, KASAN/UBSAN/kmemleak reports, panics and stalls.
SPLAT_RE='WARNING:|BUG:|Oops|general protection fault|Kernel panic|possible circular locking|possible recursive locking|inconsistent lock state|lock held when returning|suspicious RCU usage|blocked for more than|KASAN|UBSAN|unreferenced object|soft lockup|hard LOCKUP|rcu_.*detected stall'

# scan_console FILE: print splats found in a guest console log; fail if any.
scan_console() {
	local hits
	# Kernel lines only (printk time stamps): the console also carries the
	# test's stderr, where tools print "WARNING:" of their own.
	hits=$(grep -aE "^\[ *[0-9]+\.[0-9]+\] .*($SPLAT_RE)" "$1" | head -n 20) || true
	if [ -n "$hits" ]; then
		log "kernel log of the guest shows a splat ($1):"
		printf '%s\n' "$hits" >&2
		grep -aE -A 25 "^\[ *[0-9]+\.[0-9]+\] .*($SPLAT_RE)" "$1" | head -n 80 >&2
		return 1
	fi
}

# guest_job NAME LIMIT CMD: the job of make run and make bench. Set up, build
# the kernel (our module in tree with it), and run CMD in a guest (in $TOP,
# with KDIR and TOP set) for at most LIMIT seconds; print its output, die if
# it failed.
guest_job() {
	local name=$1 limit=$2 cmd=$3 out rc=0
	"$TOP/scripts/setup.sh"
	# Again: set-up may just have installed the toolchain lib.sh looks for.
	. "$TOP/scripts/lib.sh"
	# GUEST_FLAVOR: the kernel's flavour (the benchmarks': bench).
	# shellcheck disable=SC2086
	KDIR=$("$TOP/scripts/build-kernel.sh" ${GUEST_FLAVOR:-})
	out=$(mktemp -d "/tmp/dm-snap-$name.XXXXXX")
	log "$name: booting the guest (QEMU, $(grep -qwE 'vmx|svm' /proc/cpuinfo && echo KVM || echo TCG)); console log: $out/console"
	# GUEST_VM_OPTS: more vm-run.sh options (make bench: -i).
	# shellcheck disable=SC2086
	"$TOP/scripts/vm-run.sh" -t "$limit" ${GUEST_VM_OPTS:-} -o "$out" "$KDIR" -- \
		"cd $TOP && KDIR=$KDIR TOP=$TOP $cmd" || rc=$?
	cat "$out/stdout"
	[ $rc = 0 ] || die "$name failed (status $rc); console: $out/console"
}

# plot_python: a Python with matplotlib, for the benchmarks' plots: a
# virtualenv in the cache, made once; python3 itself if that fails (the
# report is then written without its plot).
plot_python() {
	local venv=$CACHE/plot-venv
	if ! "$venv/bin/python3" -c 'import matplotlib' 2> /dev/null; then
		log "installing matplotlib into $venv"
		{ python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib; } >&2 ||
			{ log "no matplotlib: the report will have no plot"; echo python3; return; }
	fi
	echo "$venv/bin/python3"
}

# bench_report NAME REPORT_PY OUTPUT: a benchmark's report, made by
# REPORT_PY from the guest's OUTPUT, in bench/results/<date>-<kernel>-NAME.md,
# and shown.
bench_report() {
	local release report
	release=$(make_kernel -s kernelrelease 2> /dev/null || echo unknown)
	report=$TOP/bench/results/$(date +%Y-%m-%d)-$release-$1.md
	python3 "$2" "$3" "$release" \
		"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
		"${GUEST_FLAVOR:-default}" > "$report"
	log "report: $report"
	cat "$report"
}
