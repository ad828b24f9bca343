/* Opening disk images (format probe, file locks) and the synchronous
 * helpers built on block_map. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/block/block.h"

static struct block_format *formats;

void block_format_register(struct block_format *format)
{
	format->next = formats;
	formats = format;
}

void block_warn(struct block_image *img, const char *fmt, ...)
{
	va_list ap;

	if (img->warned)
		return;
	img->warned = true;
	fprintf(stderr, "vireo: block: %s: ", img->path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const struct block_format *format_by_name(const char *name)
{
	for (const struct block_format *f = formats; f; f = f->next)
		if (!strcmp(f->name, name))
			return f;
	return NULL;
}

/* The format whose probe claims the file's first sector, else raw. */
static const struct block_format *format_probe(int fd)
{
	uint8_t head[BLOCK_SECTOR];
	ssize_t n = pread(fd, head, sizeof(head), 0);

	for (const struct block_format *f = formats; f && n > 0; f = f->next)
		if (f->probe && f->probe(head, n))
			return f;
	return format_by_name("raw");
}

/* Whether fd is a file that an image above in the chain already has open. */
static bool chain_has_file(const struct block_image *overlay, int fd)
{
	struct stat st, above;

	if (fstat(fd, &st) < 0)
		return false;
	for (; overlay; overlay = overlay->overlay)
		if (fstat(overlay->fd, &above) == 0 && above.st_dev == st.st_dev && above.st_ino == st.st_ino)
			return true;
	return false;
}

static struct block_image *image_open(const char *path, const char *format, bool read_only, struct block_image *overlay,
				      char *err, size_t errlen)
{
	const struct block_format *fmt = NULL;
	struct block_image *img;
	char why[2048] = "";

	if (format && !(fmt = format_by_name(format))) {
		snprintf(err, errlen, "%s: unknown image format '%s'", path, format);
		return NULL;
	}
	img = calloc(1, sizeof(*img));
	if (!img || !(img->path = strdup(path))) {
		free(img);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	img->read_only = read_only;
	img->overlay = overlay;
	img->depth = overlay ? overlay->depth + 1 : 0;
	img->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (img->fd < 0) {
		snprintf(err, errlen, "cannot open disk image %s: %s", path, strerror(errno));
		goto fail;
	}
	if (chain_has_file(overlay, img->fd)) {
		snprintf(err, errlen, "loop: %s is already in the backing chain above", path);
		goto fail;
	}
	/* Another writer would corrupt the image under us (or we under it). */
	if (flock(img->fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		snprintf(err, errlen, "disk image %s is in use %s (%s)", path,
			 read_only ? "read-write by another process" : "by another process", strerror(errno));
		goto fail;
	}
	img->format = fmt ? fmt : format_probe(img->fd);
	if (img->format->open(img, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "disk image %s (%s): %s", path, img->format->name, why);
		img->format = NULL;
		goto fail;
	}
	return img;
fail:
	if (img->fd >= 0)
		close(img->fd);
	free(img->path);
	free(img);
	return NULL;
}

struct block_image *block_open(const char *path, const char *format, bool read_only, char *err, size_t errlen)
{
	return image_open(path, format, read_only, NULL, err, errlen);
}

struct block_image *block_open_backing(struct block_image *overlay, const char *path, const char *format, char *err,
				       size_t errlen)
{
	const char *slash = strrchr(overlay->path, '/');
	struct block_image *img;
	char *full;

	if (overlay->depth + 1 >= BLOCK_CHAIN_MAX) {
		snprintf(err, errlen, "chain deeper than %d images at %s", BLOCK_CHAIN_MAX, path);
		return NULL;
	}
	if (path[0] == '/' || !slash)
		full = strdup(path);
	else if (asprintf(&full, "%.*s/%s", (int)(slash - overlay->path), overlay->path, path) < 0)
		full = NULL;
	if (!full) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	img = image_open(full, format, true, overlay, err, errlen);
	free(full);
	return img;
}

int block_close(struct block_image *img)
{
	int ret = 0;

	if (!img)
		return 0;
	if (!img->read_only)
		ret = block_flush(img);
	img->format->close(img);
	close(img->fd);
	free(img->path);
	free(img);
	return ret;
}

uint64_t block_size(const struct block_image *img)
{
	return img->size;
}

bool block_read_only(const struct block_image *img)
{
	return img->read_only;
}

const char *block_format_name(const struct block_image *img)
{
	return img->format->name;
}

int block_map(struct block_image *img, uint64_t offset, uint64_t length, bool write, struct block_extent *ext)
{
	if (!length || offset > img->size || length > img->size - offset)
		return -EINVAL;
	if (write && img->read_only)
		return -EROFS;
	int ret = img->format->map(img, offset, length, write, ext);
	if (!ret && (!ext->length || ext->length > length || (write && ext->kind != BLOCK_EXTENT_DATA))) {
		block_warn(img, "format driver returned a bad extent");
		return -EIO;
	}
	return ret;
}

int block_flush(struct block_image *img)
{
	if (img->read_only)
		return 0;
	int ret = img->format->flush ? img->format->flush(img) : 0;
	if (ret < 0)
		return ret;
	return fdatasync(img->fd) < 0 ? -errno : 0;
}

/* Moves len bytes between buf and the disk, one extent at a time. */
static int block_rw(struct block_image *img, uint64_t offset, uint8_t *buf, size_t len, bool write)
{
	while (len) {
		struct block_extent ext;
		int ret = block_map(img, offset, len, write, &ext);

		if (ret < 0)
			return ret;
		if (ext.kind == BLOCK_EXTENT_ZERO) {
			memset(buf, 0, ext.length);
		} else if (ext.kind == BLOCK_EXTENT_MEMORY) {
			memcpy(buf, ext.data, ext.length);
		} else {
			for (uint64_t done = 0; done < ext.length;) {
				ssize_t n = write ? pwrite(ext.fd, buf + done, ext.length - done, ext.offset + done)
						  : pread(ext.fd, buf + done, ext.length - done, ext.offset + done);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					return -errno;
				if (n == 0) { /* a short file reads as zeros past its end */
					if (write)
						return -EIO;
					memset(buf + done, 0, ext.length - done);
					break;
				}
				done += n;
			}
		}
		offset += ext.length;
		buf += ext.length;
		len -= ext.length;
	}
	return 0;
}

int block_read(struct block_image *img, uint64_t offset, void *buf, size_t len)
{
	return block_rw(img, offset, buf, len, false);
}

int block_write(struct block_image *img, uint64_t offset, const void *buf, size_t len)
{
	return block_rw(img, offset, (uint8_t *)buf, len, true);
}
