#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Unpack, patch, configure and build the Rust-enabled test kernel.
#
# The tree lives in $CACHE/linux-<key>, where <key> hashes the source tarball,
# the config fragment(s) and the patch series. The overlay under rust/ and
# the target's sources under drivers/md/ are copied into the tree file by
# file, only where the content changed, so make rebuilds exactly what
# depends on them. A run with nothing changed does not call make at all.
#
# The tree is the one the patch series (make series) makes: the kernel
# crate's patches and overlay, the target with its Kconfig entry
# (scripts/target-kconfig.py), and CONFIG_DM_SNAPSHOT_RUST=m from the
# fragment. make builds our module in tree, beside the C dm-snapshot.ko:
# drivers/md/dm_snapshot_rs.ko, the module the selftests load. A warning
# of the compiler on the target fails the build.
#
# Usage: build-kernel.sh [debug|bench]   (prints the tree's path)
#
# The debug flavour adds kernel/configs/dm_snap_rs_debug.config (KASAN,
# kmemleak, SLUB and object debugging) and builds with clang 14 (LLVM=-14),
# in a tree of its own. The bench flavour adds
# kernel/configs/dm_snap_rs_bench.config (no lockdep), for the benchmarks.

. "$(dirname "$0")/lib.sh"

flavor=${1:-default}
case $flavor in
default) EXTRA_FRAGMENTS=() llvm= prefix=linux- ;;
debug)	EXTRA_FRAGMENTS=("$TOP/kernel/configs/dm_snap_rs_debug.config") llvm=-14 prefix=linux-debug- ;;
bench)	EXTRA_FRAGMENTS=("$TOP/kernel/configs/dm_snap_rs_bench.config") llvm= prefix=linux-bench- ;;
*)	die "unknown flavour $flavor" ;;
esac
key=$(kernel_key)
if [ ${#EXTRA_FRAGMENTS[@]} -gt 0 ]; then
	key=$key-$(hash_files "${EXTRA_FRAGMENTS[@]}" | cut -c1-8)
fi
KDIR=$CACHE/$prefix$key

[ -f "$KSRC_TARBALL" ] || die "$KSRC_TARBALL missing: run scripts/setup.sh"
mkdir -p "$CACHE"

if [ ! -f "$KDIR/.dm-snap-unpacked" ]; then
	log "unpacking $(basename "$KSRC_TARBALL") into $KDIR"
	rm -rf "$KDIR" "$KDIR.tmp"
	mkdir -p "$KDIR.tmp"
	tar -xJf "$KSRC_TARBALL" -C "$KDIR.tmp" --strip-components=1
	for p in $(overlay_patches); do
		log "applying $(basename "$p")"
		patch -d "$KDIR.tmp" -p1 --quiet --forward < "$p" || die "patch $p failed"
	done
	python3 "$TOP/scripts/target-kconfig.py" "$KDIR.tmp" || die "the target's Kconfig entry"
	printf '%s\n' "$llvm" > "$KDIR.tmp/.dm-snap-llvm"
	touch "$KDIR.tmp/.dm-snap-unpacked"
	mv "$KDIR.tmp" "$KDIR"
	# Keep the two newest trees of each flavour; the rest are stale. A key
	# starts with 16 hex digits: "linux-" + [0-9a-f]* alone would take
	# the debug trees ("linux-debug-...") for default ones.
	hex16=$(printf '[0-9a-f]%.0s' $(seq 16))
	# shellcheck disable=SC2086
	ls -dt "$CACHE/$prefix"$hex16-*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf
fi

# Sync the overlay and the target: copy only what differs, so mtimes of
# unchanged files stay.
changed=0
while read -r f; do
	[ -n "$f" ] || continue
	if ! cmp -s "$TOP/$f" "$KDIR/$f"; then
		mkdir -p "$(dirname "$KDIR/$f")"
		cp "$TOP/$f" "$KDIR/$f"
		changed=1
	fi
done < <(overlay_files; target_files)

if [ ! -f "$KDIR/.config" ] || [ ! -f "$KDIR/.dm-snap-configured" ]; then
	log "configuring: tinyconfig + $(basename "$FRAGMENT") ${EXTRA_FRAGMENTS[*]}"
	make_kernel tinyconfig >/dev/null
	(cd "$KDIR" && scripts/kconfig/merge_config.sh -m .config "$FRAGMENT" "${EXTRA_FRAGMENTS[@]}" >/dev/null)
	make_kernel olddefconfig >/dev/null
	# Fail loudly if a wanted option did not survive (missing dependency).
	# A later fragment's word on an option is the one wanted ("# CONFIG_X
	# is not set" turns an earlier "CONFIG_X=y" off).
	declare -A wanted=()
	for f in "$FRAGMENT" "${EXTRA_FRAGMENTS[@]}"; do
		while read -r line; do
			case "$line" in
			CONFIG_*=*) wanted[${line%%=*}]=$line ;;
			"# CONFIG_"*" is not set") line=${line#\# }; unset "wanted[${line%% *}]" ;;
			esac
		done < "$f"
	done
	missing=0
	for line in "${wanted[@]}"; do
		grep -qx -- "$line" "$KDIR/.config" ||
			{ log "config: wanted $line, got: $(grep -E "^(# )?${line%%=*}[= ]" "$KDIR/.config" || echo unset)"; missing=1; }
	done
	[ $missing = 0 ] || die "config fragment not satisfied (is Rust available? see 'make rustavailable')"
	touch "$KDIR/.dm-snap-configured"
fi

stamp=$(hash_files "$KDIR/.config" $({ overlay_files; target_files; } | sed "s|^|$TOP/|"))
# A kernel crate newer than vmlinux was rebuilt by someone else (the clippy
# lint): make must run to bring the tree back in line with vmlinux.
if [ $changed = 0 ] && [ -f "$KDIR/arch/x86/boot/bzImage" ] &&
	[ ! "$KDIR/rust/kernel.o" -nt "$KDIR/vmlinux" ] &&
	[ "$(cat "$KDIR/.dm-snap-built" 2>/dev/null)" = "$stamp" ]; then
	log "kernel up to date: $KDIR"
else
	log "building kernel in $KDIR (log: $KDIR/build.log)"
	if ! make_kernel bzImage modules > "$KDIR/build.log" 2>&1; then
		grep -E 'error|Error' -A5 "$KDIR/build.log" | head -60 >&2
		die "kernel build failed"
	fi
	# rustc names the file ("--> FILE") on a line after its warning, modpost
	# in it ("in FILE").
	if grep -i -A3 -E '(^|: )warning' "$KDIR/build.log" | grep -qE '(-->|in) drivers/md/dm_snap'; then
		grep -i -A12 -E '(^|: )warning' "$KDIR/build.log" | head -60 >&2
		die "the target builds with warnings (see $KDIR/build.log)"
	fi
	echo "$stamp" > "$KDIR/.dm-snap-built"
	log "kernel built"
fi
echo "$KDIR"
