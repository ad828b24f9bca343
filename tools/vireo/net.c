/* vireo run's network options: -netdev, -nic (QEMU's spellings) and --net. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/vireo/vireo.h"
#include "vmm/vmm.h"

int option_netdev(struct vm_config *cfg, const char *spec)
{
	if (cfg->nnetdevs == VM_MAX_NETDEVS) {
		fprintf(stderr, "vireo: too many -netdev back ends (at most %d)\n", VM_MAX_NETDEVS);
		return -1;
	}
	cfg->netdevs[cfg->nnetdevs++] = spec;
	return 0;
}

/* Strings made from shorthands, alive as long as the configuration. */
static char *made[2 * VM_MAX_NETDEVS];
static unsigned nmade;

static const char *make(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *make(const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (nmade == sizeof(made) / sizeof(made[0]))
		return NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s ? made[nmade++] = s : NULL;
}

/* A back end of type (and props) with a virtio-net NIC on it: -nic and --net. */
static int add_nic(struct vm_config *cfg, const char *type, size_t tlen, const char *props, const char *mac)
{
	const char *netdev, *device;
	unsigned n = cfg->nnetdevs;

	netdev = make("%.*s,id=nic%u%s%s", (int)tlen, type, n, *props ? "," : "", props);
	device = make("virtio-net-pci,netdev=nic%u%s%s", n, mac ? ",mac=" : "", mac ? mac : "");
	if (!netdev || !device)
		return option_fail("%s", "too many network interfaces");
	return option_netdev(cfg, netdev) || option_add_device(cfg, device) ? -1 : 0;
}

/* -nic TYPE[,model=virtio-net-pci][,mac=MAC][,back-end properties]; -nic none. */
int option_nic(struct vm_config *cfg, const char *spec)
{
	char props[512] = "", mac[32] = "";
	size_t tlen = strcspn(spec, ",");
	const char *p = spec + tlen;

	if (tlen == 4 && !strncmp(spec, "none", 4) && !*p)
		return 0;
	while (*p == ',') {
		const char *item = p + 1;
		size_t n = strcspn(item, ",");

		if (!strncmp(item, "model=", 6)) {
			char model[32];
			snprintf(model, sizeof(model), "%.*s", (int)(n - 6), item + 6);
			if (strcmp(model, "virtio-net-pci") && strcmp(model, "virtio") && strcmp(model, "virtio-net"))
				return option_fail("-nic: unsupported model '%s' (virtio-net-pci)", model);
		} else if (!strncmp(item, "mac=", 4)) {
			snprintf(mac, sizeof(mac), "%.*s", (int)(n - 4), item + 4);
		} else if (strlen(props) + n + 2 < sizeof(props)) {
			snprintf(props + strlen(props), sizeof(props) - strlen(props), "%s%.*s", *props ? "," : "",
				 (int)n, item);
		} else {
			return option_fail("-nic '%s' is too long", spec);
		}
		p = item + n;
	}
	return add_nic(cfg, spec, tlen, props, *mac ? mac : NULL);
}

/* --net user[,PROPS] or --net tap:IFNAME[,PROPS]: Vireo's shorthand for -nic. */
int option_net(struct vm_config *cfg, const char *s)
{
	if (!strncmp(s, "tap:", 4) && s[4] && s[4] != ',') {
		const char *props = make("ifname=%s", s + 4);
		return props ? add_nic(cfg, "tap", 3, props, NULL) : option_fail("%s", "too many network interfaces");
	}
	if (!strncmp(s, "user", 4) && (!s[4] || s[4] == ','))
		return add_nic(cfg, "user", 4, s[4] ? s + 5 : "", NULL);
	return option_fail("unknown network '%s' (user or tap:IFNAME)", s);
}
