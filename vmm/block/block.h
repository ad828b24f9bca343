/*
 * Disk images for block devices: raw files and qcow2 (version 3, with
 * backing files). Nothing outside vmm/ includes this file.
 *
 *   block.c    opening (format probe, locks, backing chains), the synchronous
 *              helpers built on block_map
 *   raw.c      a raw image: the disk is the file
 *   qcow2.c    qcow2 (versions 2 and 3): L1/L2 tables, refcounts, copy-on-
 *              write from a backing image (docs/block.md)
 *
 * A format driver does not move data: block_map says where a range of the
 * virtual disk lives (an extent of a host file, or zeros), allocating on
 * write, and the caller (virtio-blk's I/O thread, with io_uring) reads or
 * writes the extent itself. Metadata a driver changes (qcow2's tables) stays
 * in memory until block_flush or block_close writes it back, after the data
 * it points to, so a guest's flush is what makes its writes durable, as on
 * a disk with a volatile cache.
 *
 * An image is used by one thread at a time (the device's I/O thread); images
 * opened writable take an exclusive lock on their file (as QEMU does), read-
 * only ones a shared lock, so one base image may back many VMs' overlays
 * while nobody writes it.
 */
#ifndef VIREO_VMM_BLOCK_H
#define VIREO_VMM_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLOCK_SECTOR 512

struct block_image;

/* Where a range of the virtual disk is. */
enum block_extent_kind {
	BLOCK_EXTENT_DATA, /* length bytes of fd from offset */
	BLOCK_EXTENT_ZERO, /* length bytes of zeros (reads only) */
	BLOCK_EXTENT_MEMORY, /* length bytes at data (reads only): copy them before the next block_map */
};

/*
 * A DATA extent's fd is the image's file or, for reads, a backing image's.
 * A MEMORY extent is a qcow2 compressed cluster the driver inflated into its
 * own buffer, which later maps reuse: the caller copies it out at once.
 */
struct block_extent {
	enum block_extent_kind kind;
	int fd;
	uint64_t offset;
	uint64_t length; /* > 0, at most what was asked for */
	const void *data;
};

/*
 * Opens the image at path. format is "raw", "qcow2" or NULL to probe (a file
 * that starts with the qcow2 magic is qcow2, anything else raw). A qcow2
 * image's backing file is opened read-only, its path taken relative to the
 * image's directory as QEMU does. NULL with a message naming the file and
 * what is wrong on failure.
 */
struct block_image *block_open(const char *path, const char *format, bool read_only, char *err, size_t errlen);
/* Writes back what block_flush would, then closes the image and its backing
 * chain. Returns the image's first write-back error (0 if none). */
int block_close(struct block_image *img);

uint64_t block_size(const struct block_image *img); /* the virtual disk, bytes */
bool block_read_only(const struct block_image *img);
const char *block_format_name(const struct block_image *img);

/*
 * The first extent of [offset, offset + length), which must lie within the
 * disk. For a write (write true) the extent is DATA and writable: unallocated
 * qcow2 clusters are allocated, and filled from the backing image first when
 * the write covers only part of them. Returns 0, -EROFS for a write to a
 * read-only image, -EIO (with the reason logged once) for a corrupt image
 * or failed metadata I/O, -ENOSPC when the image cannot grow.
 */
int block_map(struct block_image *img, uint64_t offset, uint64_t length, bool write, struct block_extent *ext);
/* Writes back the metadata the image changed, then fdatasync: everything
 * written before is on stable storage. */
int block_flush(struct block_image *img);

/* Synchronous reads and writes through block_map with preadv/pwritev, for
 * tools, tests and fuzzers (the device uses io_uring). 0 or -errno. */
int block_read(struct block_image *img, uint64_t offset, void *buf, size_t len);
int block_write(struct block_image *img, uint64_t offset, const void *buf, size_t len);

/* ---- for format drivers ---------------------------------------------------- */

/* A format driver registers itself with BLOCK_FORMAT at the end of its file. */
struct block_format {
	const char *name;
	/* Optional: whether the file's first bytes (fewer than 512 if it is
	 * shorter) are this format's. Raw takes what no format claims. */
	bool (*probe)(const uint8_t *head, size_t len);
	/* The driver's open: fills img->size and img->priv from img->fd. */
	int (*open)(struct block_image *img, char *err, size_t errlen);
	int (*map)(struct block_image *img, uint64_t offset, uint64_t length, bool write, struct block_extent *ext);
	int (*flush)(struct block_image *img); /* metadata only: block_flush syncs */
	void (*close)(struct block_image *img);

	struct block_format *next;
};

void block_format_register(struct block_format *format);
#define BLOCK_FORMAT(format)                                                                                           \
	__attribute__((constructor)) static void block_format_register_##format(void)                                  \
	{                                                                                                              \
		block_format_register(&format);                                                                        \
	}

struct block_image {
	const struct block_format *format;
	char *path;
	int fd;
	bool read_only;
	uint64_t size;
	void *priv;
	bool warned;		     /* one corruption message per image */
	struct block_image *overlay; /* the image this one backs, NULL at the top */
	unsigned depth;		     /* images above this one in its chain */
};

/* The longest backing chain opened (loops and absurd chains end there). */
#define BLOCK_CHAIN_MAX 16

/*
 * Opens overlay's backing image read-only: path relative to the overlay's
 * directory unless absolute, format NULL to probe. Refuses a file already in
 * the chain (a loop) and chains deeper than BLOCK_CHAIN_MAX.
 */
struct block_image *block_open_backing(struct block_image *overlay, const char *path, const char *format, char *err,
				       size_t errlen);

/* Logs "block: PATH: message" once per image (corrupt images, failed I/O). */
void block_warn(struct block_image *img, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
