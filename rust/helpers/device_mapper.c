// SPDX-License-Identifier: GPL-2.0

#include <linux/device-mapper.h>
#include <linux/fs.h>

void *rust_helper_dm_per_bio_data(struct bio *bio, size_t data_size)
{
	return dm_per_bio_data(bio, data_size);
}

unsigned int rust_helper_dm_bio_get_target_bio_nr(const struct bio *bio)
{
	return dm_bio_get_target_bio_nr(bio);
}

struct file *rust_helper_get_file(struct file *f)
{
	return get_file(f);
}
