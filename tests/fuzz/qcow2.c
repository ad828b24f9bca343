/*
 * libFuzzer target: qcow2 images. The input is the image file. It is opened
 * read-only and a few ranges read (start, middle, end of the disk), then
 * writable and the same ranges written, flushed and read again. Nothing is
 * compared (a hostile image may map two guest clusters to one host
 * cluster): what is checked is that nothing crashes, leaks or reads out of
 * bounds, whatever the tables say.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/block/block.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static char dir[] = "/tmp/vireo-fuzz-qcow2-XXXXXX";
static char image[sizeof(dir) + 16];

static void remove_dir(void)
{
	unlink(image);
	rmdir(dir);
}

/* The image lives alone in its directory, so a relative backing file name
 * finds nothing but the image itself (a loop, refused). */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!mkdtemp(dir)) {
		perror(dir);
		exit(1);
	}
	snprintf(image, sizeof(image), "%s/image", dir);
	atexit(remove_dir);
	return 0;
}

static void exercise(bool read_only)
{
	static unsigned char buf[70000];
	char err[4096];
	struct block_image *img = block_open(image, "qcow2", read_only, err, sizeof(err));

	if (!img)
		return;
	uint64_t size = block_size(img);
	uint64_t at[] = {0, size / 2 + 513, size > sizeof(buf) ? size - sizeof(buf) : 0};
	/* read, then (writable) write and flush, then read again */
	for (int round = 0; round < (read_only ? 1 : 3); round++) {
		for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
			size_t len = size - at[i] < sizeof(buf) ? size - at[i] : sizeof(buf);

			if (len && round == 1)
				block_write(img, at[i], memset(buf, 0x5a + i, len), len);
			else if (len)
				block_read(img, at[i], buf, len);
		}
		if (round == 1)
			block_flush(img);
	}
	block_close(img);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	int fd = open(image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
		perror(image);
		exit(1);
	}
	close(fd);
	exercise(true);
	exercise(false);
	return 0;
}
