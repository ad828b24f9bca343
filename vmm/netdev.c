/*
 * The VM's network back ends (-netdev): checked with the rest of the
 * configuration, opened once by vm_create and closed by vm_destroy, so a
 * guest reset keeps its tap queues and slirp connections; virtio-net finds
 * its back end here by id.
 */
#include <string.h>

#include "net/net.h"
#include "vmm/internal.h"

int netdevs_check(const struct vm_config *cfg, char *err, size_t errlen)
{
	char ids[VM_MAX_NETDEVS][32];

	if (cfg->nnetdevs > VM_MAX_NETDEVS) {
		snprintf(err, errlen, "too many -netdev back ends: at most %d", VM_MAX_NETDEVS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nnetdevs; i++) {
		int ret = net_check(cfg->netdevs[i], ids[i], sizeof(ids[i]), err, errlen);

		if (ret < 0)
			return ret;
		for (unsigned j = 0; j < i; j++) {
			if (!strcmp(ids[i], ids[j])) {
				snprintf(err, errlen, "two -netdev back ends have the id '%s'", ids[i]);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int netdevs_open(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->cfg.nnetdevs && i < VM_MAX_NETDEVS; i++) {
		int ret = net_open(vm->cfg.netdevs[i], &vm->netdevs[i], err, errlen);

		if (ret < 0)
			return ret;
	}
	return 0;
}

void netdevs_close(struct vm *vm)
{
	for (unsigned i = 0; i < VM_MAX_NETDEVS; i++) {
		net_close(vm->netdevs[i]);
		vm->netdevs[i] = NULL;
	}
}

struct net_backend *vm_netdev(struct vm *vm, const char *id)
{
	for (unsigned i = 0; i < VM_MAX_NETDEVS; i++)
		if (vm->netdevs[i] && !strcmp(net_id(vm->netdevs[i]), id))
			return vm->netdevs[i];
	return NULL;
}
