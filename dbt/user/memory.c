/*
 * Reaching guest memory from the runtime. The guest's memory is ours, but
 * its pointers are not to be trusted: process_vm_readv/writev on ourselves
 * report a bad address as EFAULT where a plain access would crash vireo.
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dbt/user/user.h"

int user_read(void *dst, uint64_t src, size_t len)
{
	struct iovec local = {dst, len}, remote = {(void *)(uintptr_t)src, len};
	if (!len)
		return 0;
	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

int user_write(void *dst, const void *src, size_t len)
{
	struct iovec local = {(void *)src, len}, remote = {dst, len};
	if (!len)
		return 0;
	return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

int user_read_string(char *dst, size_t size, uint64_t src)
{
	size_t n = 0;
	while (n < size) {
		/* Up to the end of src's page: the next may be unmapped. */
		size_t chunk = 4096 - ((src + n) & 4095);
		if (chunk > size - n)
			chunk = size - n;
		if (user_read(dst + n, src + n, chunk) < 0)
			return -EFAULT;
		char *z = memchr(dst + n, 0, chunk);
		if (z)
			return 0;
		n += chunk;
	}
	return -ENAMETOOLONG;
}
