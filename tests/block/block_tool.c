/*
 * Drives vmm/block for qcow2.py, which checks the results against QEMU's
 * qemu-img and qemu-io.
 *
 *   block-tool read IMAGE OUT
 *       copies the virtual disk to the raw file OUT through block_read, in
 *       pieces of random, unaligned sizes
 *   block-tool write SEED COUNT IMAGE MODEL [IMAGE MODEL]...
 *       opens every IMAGE writable at once and makes COUNT random writes
 *       to each (unaligned, across clusters, some large), mirrored into the
 *       raw file MODEL (which starts as the disk's contents); reads back
 *       random ranges and compares them with the model along the way,
 *       flushes now and then, and compares the whole disk before closing
 *   block-tool crash SEED COUNT IMAGE MODEL
 *       COUNT random writes to the first half of the disk (mirrored into
 *       MODEL), a flush, COUNT more to the second half, then exits without
 *       closing: the first half must survive, the image must stay consistent
 *   block-tool open IMAGE ro|rw
 *       opens the image, reads parts of it and (rw) writes a few ranges;
 *       prints what failed. Exit status 0 when it opened, 3 when it did not.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/block/block.h"

static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill(uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = rng() >> 32;
}

static struct block_image *open_or_die(const char *path, bool read_only)
{
	char err[4096];
	struct block_image *img = block_open(path, NULL, read_only, err, sizeof(err));

	if (!img) {
		fprintf(stderr, "FAIL %s\n", err);
		exit(1);
	}
	return img;
}

static int cmd_read(const char *path, const char *out)
{
	struct block_image *img = open_or_die(path, true);
	uint64_t size = block_size(img);
	uint8_t *buf = malloc(1 << 20);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	rng_state = 0x1234567;
	if (fd < 0 || !buf || ftruncate(fd, size) < 0) {
		perror(out);
		return 1;
	}
	for (uint64_t off = 0; off < size;) {
		size_t len = 1 + rng() % (1 << 20);
		int ret;

		if (len > size - off)
			len = size - off;
		if ((ret = block_read(img, off, buf, len)) < 0) {
			fprintf(stderr, "FAIL read of %zu bytes at %llu: %s\n", len, (unsigned long long)off,
				strerror(-ret));
			return 1;
		}
		/* Skipping zeros keeps OUT as sparse as the disk. */
		bool zero = buf[0] == 0 && !memcmp(buf, buf + 1, len - 1);
		if (!zero && pwrite(fd, buf, len, off) != (ssize_t)len) {
			perror(out);
			return 1;
		}
		off += len;
	}
	close(fd);
	free(buf);
	printf("PASS read %s (%s, %llu bytes)\n", path, block_format_name(img), (unsigned long long)size);
	block_close(img);
	return 0;
}

struct disk {
	const char *path;
	struct block_image *img;
	uint8_t *model;
	uint64_t size;
};

static int check_range(struct disk *d, uint64_t off, size_t len, uint8_t *buf)
{
	int ret = block_read(d->img, off, buf, len);

	if (ret < 0) {
		fprintf(stderr, "FAIL %s: read of %zu at %llu: %s\n", d->path, len, (unsigned long long)off,
			strerror(-ret));
		return -1;
	}
	if (memcmp(buf, d->model + off, len)) {
		size_t i = 0;

		while (buf[i] == d->model[off + i])
			i++;
		fprintf(stderr, "FAIL %s: byte %llu reads 0x%02x, written 0x%02x\n", d->path,
			(unsigned long long)(off + i), buf[i], d->model[off + i]);
		return -1;
	}
	return 0;
}

static int cmd_write(uint64_t seed, unsigned count, int ndisks, char **args)
{
	struct disk disks[8];
	size_t max = 4 << 20;
	uint8_t *buf = malloc(max);
	int ret;

	rng_state = seed | 1;
	for (int i = 0; i < ndisks; i++) {
		struct disk *d = &disks[i];
		int fd = open(args[2 * i + 1], O_RDWR);

		d->path = args[2 * i];
		d->img = open_or_die(d->path, false);
		d->size = block_size(d->img);
		d->model = fd < 0 ? MAP_FAILED : mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (d->model == MAP_FAILED) {
			perror(args[2 * i + 1]);
			return 1;
		}
		close(fd);
	}
	for (unsigned n = 0; n < count; n++) {
		for (int i = 0; i < ndisks; i++) {
			struct disk *d = &disks[i];
			uint64_t r = rng(), off = rng() % d->size;
			size_t len;

			/* mostly small and unaligned, some sector-aligned, a few large */
			if (r % 8 == 0)
				len = 1 + rng() % max;
			else
				len = 1 + rng() % 70000;
			if (r % 3 == 0) {
				off &= ~511ull;
				len = (len + 511) & ~511ull;
			}
			if (len > d->size - off)
				len = d->size - off;
			fill(buf, len);
			if ((ret = block_write(d->img, off, buf, len)) < 0) {
				fprintf(stderr, "FAIL %s: write of %zu at %llu: %s\n", d->path, len,
					(unsigned long long)off, strerror(-ret));
				return 1;
			}
			memcpy(d->model + off, buf, len);
			if (r % 5 == 0) {
				off = rng() % d->size;
				len = 1 + rng() % 200000;
				if (check_range(d, off, len < d->size - off ? len : d->size - off, buf) < 0)
					return 1;
			}
			if (r % 37 == 0 && (ret = block_flush(d->img)) < 0) {
				fprintf(stderr, "FAIL %s: flush: %s\n", d->path, strerror(-ret));
				return 1;
			}
		}
	}
	for (int i = 0; i < ndisks; i++) {
		struct disk *d = &disks[i];

		for (uint64_t off = 0; off < d->size; off += max)
			if (check_range(d, off, d->size - off < max ? d->size - off : max, buf) < 0)
				return 1;
		if ((ret = block_close(d->img)) < 0) {
			fprintf(stderr, "FAIL %s: close: %s\n", d->path, strerror(-ret));
			return 1;
		}
		munmap(d->model, d->size);
		printf("PASS %u writes to %s read back\n", count, d->path);
	}
	free(buf);
	return 0;
}

static int cmd_crash(uint64_t seed, unsigned count, const char *path, const char *model_path)
{
	struct block_image *img = open_or_die(path, false);
	uint64_t half = block_size(img) / 2;
	int fd = open(model_path, O_RDWR);
	uint8_t *buf = malloc(1 << 20);
	int ret;

	rng_state = seed | 1;
	uint8_t *model = fd < 0 ? MAP_FAILED : mmap(NULL, half, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (model == MAP_FAILED || !buf) {
		perror(model_path);
		return 1;
	}
	for (unsigned n = 0; n < 2 * count; n++) {
		uint64_t base = n < count ? 0 : half, off = rng() % half;
		size_t len = 1 + rng() % (1 << 20);

		if (len > half - off)
			len = half - off;
		fill(buf, len);
		if ((ret = block_write(img, base + off, buf, len)) < 0) {
			fprintf(stderr, "FAIL write: %s\n", strerror(-ret));
			return 1;
		}
		if (n < count)
			memcpy(model + off, buf, len);
		if (n + 1 == count && (ret = block_flush(img)) < 0) {
			fprintf(stderr, "FAIL flush: %s\n", strerror(-ret));
			return 1;
		}
	}
	munmap(model, half);
	printf("PASS %u writes flushed, %u more not, exiting without closing\n", count, count);
	fflush(stdout);
	_exit(0);
}

/* A hostile or unsupported image: whatever happens, it is an error message. */
static int cmd_open(const char *path, bool read_only)
{
	char err[4096];
	struct block_image *img = block_open(path, NULL, read_only, err, sizeof(err));
	static uint8_t buf[1 << 20];
	unsigned failed = 0;

	if (!img) {
		printf("refused: %s\n", err);
		return 3;
	}
	uint64_t size = block_size(img);
	uint64_t at[] = {0, size / 3, size / 2 + 4097, size > sizeof(buf) ? size - sizeof(buf) : 0};
	for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		size_t len = size - at[i] < sizeof(buf) ? size - at[i] : sizeof(buf);
		if (len && block_read(img, at[i], buf, len) < 0)
			failed++;
		if (len && !read_only && block_write(img, at[i], buf, len < 70000 ? len : 70000) < 0)
			failed++;
	}
	int ret = block_close(img);
	printf("opened: %llu bytes, %u failed requests, close %s\n", (unsigned long long)size, failed,
	       ret < 0 ? strerror(-ret) : "ok");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "read"))
		return cmd_read(argv[2], argv[3]);
	if (argc >= 6 && argc % 2 == 0 && argc <= 20 && !strcmp(argv[1], "write"))
		return cmd_write(strtoull(argv[2], NULL, 0), strtoul(argv[3], NULL, 0), (argc - 4) / 2, argv + 4);
	if (argc == 6 && !strcmp(argv[1], "crash"))
		return cmd_crash(strtoull(argv[2], NULL, 0), strtoul(argv[3], NULL, 0), argv[4], argv[5]);
	if (argc == 4 && !strcmp(argv[1], "open"))
		return cmd_open(argv[2], !strcmp(argv[3], "ro"));
	fprintf(stderr,
		"usage: block-tool read IMAGE OUT | write SEED COUNT IMAGE MODEL... | crash SEED COUNT IMAGE MODEL | "
		"open IMAGE ro|rw\n");
	return 2;
}
