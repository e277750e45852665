# SPDX-License-Identifier: GPL-2.0
#
# Rust dm-snapshot targets.
#
# Kbuild reads ./Kbuild when it builds the module (make -C <kernel> M=$PWD);
# this Makefile only holds the project's commands:
#
#   make run              set up, build, boot and run the snapshot demo
#   make check            every test against our module; ends "N passed, N failed"
#   make check-reference  the same guest selftests against the C dm-snapshot.ko
#   make check-debug      the guest selftests on a KASAN + kmemleak kernel
#   make soak             the long forms of the tests make check runs shorter
#   make kernel / module  build steps alone
#   make host-test        the host unit tests of the kernel-independent logic
#   make bench            the benchmark of record: fio workloads and the COW
#                         throttle, C against ours and the references
#   make bench-scale      memory and activation time of 10 k to 1 M exceptions
#   make bench-profile    a workload's instructions per function, C and ours
#   make lvm2-check       LVM2's own snapshot test scripts, on C and on ours
#   make series           the work as a patch series for a 6.12 tree

ifneq ($(KERNELRELEASE),)
include $(src)/Kbuild
else

.PHONY: run check check-reference check-debug soak kernel module host-test bench bench-scale \
	bench-profile lvm2-check series clean

run:
	@scripts/run.sh

check:
	@scripts/check.sh

check-reference:
	@DM_SNAP_IMPL=c scripts/check.sh

check-debug:
	@DM_SNAP_FLAVOR=debug scripts/check.sh

soak:
	@DM_SNAP_SOAK=1 scripts/check.sh

kernel:
	@scripts/build-kernel.sh

module:
	@scripts/build-module.sh

host-test:
	@cd host && cargo test

bench:
	@scripts/bench.sh

bench-scale:
	@scripts/bench-scale.sh

bench-profile:
	@scripts/bench-profile.sh

lvm2-check:
	@scripts/lvm2-tests.sh

series:
	@scripts/series.sh

clean:
	@KDIR=$$(scripts/build-kernel.sh 2>/dev/null) && \
		$(MAKE) -C "$$KDIR" M=$(CURDIR) clean || true
	@rm -rf host/target

endif
