/*
 * System calls that write guest memory through buffers, and pages holding
 * translations. Such a page is write-protected on the host while the guest
 * may write it (maps.c): a guest store faults and is retried, but the kernel
 * writing into it for a system call fails with EFAULT (read() of code into
 * a JIT's RWX buffer). So once the first page is protected, these calls
 * leave translated code for the runtime, which drops the translations of
 * the protected pages in the call's buffers first (their protection goes
 * with them), then makes the call. Another thread may translate from such
 * a page in between: an EFAULT with code found again in the buffers is
 * retried. Dropping first rather than after an EFAULT keeps calls whose
 * failure has effects (a datagram is lost when recvmsg cannot copy it)
 * exact. Programs without writable code never pay for any of this.
 */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "dbt/translator.h"
#include "dbt/user/user.h"

/* The calls, and where their buffers are. */
static const uint16_t writers[] = {
    SYS_read, SYS_pread64, SYS_readv, SYS_preadv, SYS_preadv2, SYS_recvfrom, SYS_recvmsg, SYS_getrandom,
};

bool user_sysbuf_handles(uint64_t nr)
{
	for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++)
		if (nr == writers[i])
			return true;
	return false;
}

void user_sysbuf_enable(void)
{
	static bool enabled;
	if (__atomic_exchange_n(&enabled, true, __ATOMIC_RELAXED))
		return;
	for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++)
		xlat_filter_syscall(writers[i]);
}

/* The buffers of an iovec array (the kernel refuses more than IOV_MAX). */
static unsigned unprotect_iov(uint64_t iov, uint64_t count)
{
	unsigned n = 0;
	if (count > IOV_MAX)
		return 0;
	for (uint64_t i = 0; i < count; i++) {
		struct iovec v;
		if (user_read(&v, iov + i * sizeof(v), sizeof(v)) < 0)
			break;
		n += user_maps_unprotect((uintptr_t)v.iov_base, v.iov_len);
	}
	return n;
}

/* Drops the translations in every buffer the call writes; returns how many
 * pages held code. */
static unsigned unprotect(uint64_t nr, const uint64_t *a)
{
	switch (nr) {
	case SYS_read:
	case SYS_pread64: return user_maps_unprotect(a[1], a[2]);
	case SYS_getrandom: return user_maps_unprotect(a[0], a[1]);
	case SYS_readv:
	case SYS_preadv:
	case SYS_preadv2: return unprotect_iov(a[1], a[2]);
	case SYS_recvfrom: {
		unsigned n = user_maps_unprotect(a[1], a[2]);
		uint32_t len;
		if (a[4] && a[5] && user_read(&len, a[5], sizeof(len)) == 0)
			n += user_maps_unprotect(a[4], len) + user_maps_unprotect(a[5], sizeof(len));
		return n;
	}
	case SYS_recvmsg: {
		struct msghdr m;
		if (user_read(&m, a[1], sizeof(m)) < 0)
			return 0;
		return user_maps_unprotect(a[1], sizeof(m)) +
		       user_maps_unprotect((uintptr_t)m.msg_name, m.msg_namelen) +
		       user_maps_unprotect((uintptr_t)m.msg_control, m.msg_controllen) +
		       unprotect_iov((uintptr_t)m.msg_iov, m.msg_iovlen);
	}
	default: return 0;
	}
}

long user_sysbuf_syscall(uint64_t nr, const uint64_t *a)
{
	long r;
	unprotect(nr, a);
	for (int tries = 0;; tries++) {
		r = user_syscall6((long)nr, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], (long)a[5]);
		if (r != -EFAULT || tries == 16 || !unprotect(nr, a))
			return r;
	}
}
