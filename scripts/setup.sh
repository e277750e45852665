#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything the build and the tests need on a fresh Debian 12
# machine (as root). Fast when everything is already there.

. "$(dirname "$0")/lib.sh"

DEBS=(linux-source-6.12 rustc-web rust-web-src rustfmt-web rust-web-clippy
	libclang-dev clang-14 lld-14 llvm-14 gcc make flex bison bc libelf-dev libssl-dev
	cpio kmod xz-utils patch perl python3 openssl util-linux
	qemu-system-x86 udev dmsetup lvm2 fio)

missing=()
for p in "${DEBS[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" > "$CACHE/apt.log" 2>&1 ||
		{ tail -n 20 "$CACHE/apt.log" >&2; die "apt-get install failed"; }
fi

if ! "$BINDGEN" --version 2>/dev/null | grep -q '0\.69\.5'; then
	log "installing bindgen-cli 0.69.5 from crates.io"
	cargo install --locked bindgen-cli --version 0.69.5 >/dev/null 2>&1 ||
		die "cargo install bindgen-cli failed"
fi

if ! command -v vng >/dev/null 2>&1; then
	log "installing virtme-ng from PyPI"
	python3 -m pip install --quiet virtme-ng==1.42 2>&1 | grep -v -i warning >&2 || true
	hash -r
	command -v vng >/dev/null 2>&1 || die "virtme-ng did not install"
fi

. "$TOP/scripts/lib.sh"
[ -f "$KSRC_TARBALL" ] || die "$KSRC_TARBALL missing after install"
[ -d "$RUST_LIB_SRC" ] || die "Rust library sources missing (rust-web-src)"
