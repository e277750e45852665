// SPDX-License-Identifier: GPL-2.0
/*
 * A QEMU TCG plugin for make bench-profile: counts the guest kernel's
 * instructions per translation block and writes, when QEMU exits, one
 * line per block that ran, "<pc in hex> <instructions> <executions>", to
 * the file named by $INSNS_OUT. Under -icount a guest's time is its
 * instruction count, so these counts are where its time went, exactly.
 *
 * Written against QEMU's plugin API version 1 (QEMU 7.2, Debian
 * bookworm), whose few calls are declared here: no QEMU headers needed.
 * Build: gcc -O2 -shared -fPIC -o insns.so bench-profile-plugin.c
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id,
					       struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
					      enum qemu_plugin_op op, void *ptr,
					      uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
				    qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One entry per block (start address and length); open addressing. */
struct block {
	uint64_t pc;
	uint64_t insns;
	uint64_t execs;
};

#define BLOCKS (1u << 22)
static struct block *blocks;

static struct block *block_of(uint64_t pc, uint64_t insns)
{
	uint64_t h = (pc * 0x9e3779b97f4a7c15ull) ^ insns;
	uint32_t i = (uint32_t)(h >> 40) & (BLOCKS - 1);

	for (;; i = (i + 1) & (BLOCKS - 1)) {
		struct block *b = &blocks[i];

		if (!b->insns) {
			b->pc = pc;
			b->insns = insns;
			return b;
		}
		if (b->pc == pc && b->insns == insns)
			return b;
	}
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t pc = qemu_plugin_tb_vaddr(tb);
	size_t n = qemu_plugin_tb_n_insns(tb);

	/* The kernel's half of the address space only. */
	if (pc < 0xffff000000000000ull || !n)
		return;
	/* Single vCPU (-icount): a plain add, run inline by TCG. */
	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
						 &block_of(pc, n)->execs, 1);
}

static void write_counts(qemu_plugin_id_t id, void *p)
{
	const char *path = getenv("INSNS_OUT");
	FILE *f;

	if (!path || !(f = fopen(path, "w")))
		return;
	for (uint32_t i = 0; i < BLOCKS; i++)
		if (blocks[i].execs)
			fprintf(f, "%llx %llu %llu\n",
				(unsigned long long)blocks[i].pc,
				(unsigned long long)blocks[i].insns,
				(unsigned long long)blocks[i].execs);
	fclose(f);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
		    char **argv)
{
	blocks = calloc(BLOCKS, sizeof(*blocks));
	if (!blocks)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, write_counts, NULL);
	return 0;
}
