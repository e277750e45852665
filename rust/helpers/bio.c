// SPDX-License-Identifier: GPL-2.0

#include <linux/bio.h>
#include <linux/blkdev.h>

void rust_helper_bio_set_dev(struct bio *bio, struct block_device *bdev)
{
	bio_set_dev(bio, bdev);
}

enum req_op rust_helper_bio_op(const struct bio *bio)
{
	return bio_op(bio);
}

bool rust_helper_op_is_write(blk_opf_t op)
{
	return op_is_write(op);
}

sector_t rust_helper_bdev_nr_sectors(struct block_device *bdev)
{
	return bdev_nr_sectors(bdev);
}

unsigned int rust_helper_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}

unsigned int rust_helper_bdev_physical_block_size(struct block_device *bdev)
{
	return bdev_physical_block_size(bdev);
}
