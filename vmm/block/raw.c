/* A raw disk image: the virtual disk is the file, byte for byte. Its size is
 * the file's, rounded down to whole sectors. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/block/block.h"

static int raw_open(struct block_image *img, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(img->fd, &st) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "not a regular file or block device");
		return -EINVAL;
	}
	off_t end = lseek(img->fd, 0, SEEK_END); /* a block device's st_size is 0 */
	if (end < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -errno;
	}
	img->size = (uint64_t)end / BLOCK_SECTOR * BLOCK_SECTOR;
	if (!img->size) {
		snprintf(err, errlen, "the image is empty (smaller than one %d-byte sector)", BLOCK_SECTOR);
		return -EINVAL;
	}
	return 0;
}

static int raw_map(struct block_image *img, uint64_t offset, uint64_t length, bool write, struct block_extent *ext)
{
	(void)write;
	*ext = (struct block_extent){.kind = BLOCK_EXTENT_DATA, .fd = img->fd, .offset = offset, .length = length};
	return 0;
}

static void raw_close(struct block_image *img)
{
	(void)img;
}

static struct block_format raw_format = {
    .name = "raw",
    .open = raw_open,
    .map = raw_map,
    .close = raw_close,
};

BLOCK_FORMAT(raw_format)
