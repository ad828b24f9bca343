/* vireo: the command-line front end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/vireo/vireo.h"
#include "vmm/vmm.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vireo run --kernel PATH [--initrd PATH] [--cmdline STR] [--memory SIZE]\n"
		   "                 [--cpus N] [--engine dbt|kvm|auto] [--serial stdio|none|file:PATH]\n"
		   "                 [--console serial|virtio] [--device SPEC]... [--stats]\n"
		   "                 [--disk PATH[,readonly][,format=raw|qcow2]]...\n"
		   "                 [--net user[,hostfwd=tcp::HOSTPORT-:GUESTPORT] | --net tap:IFNAME[,queues=N]]...\n"
		   "                 [--netdev SPEC]...   (-netdev tap,id=n0,ifname=tap0,script=no -device virtio-net-pci,netdev=n0)\n"
		   "       vireo -kernel PATH [qemu-system-x86_64 options]   (the common QEMU spellings)\n"
		   "       vireo user [--] PROG [ARGS...]   (a Linux program, its code translated)\n"
		   "       vireo mkguest [--out DIR] [--flavour cloud|generic] [--add PATH]...   (a Linux guest)\n"
		   "       vireo --help | --version\n");
}

/* vireo mkguest: tools/mkguest, found through $VIREO_MKGUEST, the source
 * tree this vireo was built from, or where it was installed. */
static int vireo_mkguest(char **argv)
{
	const char *env = getenv("VIREO_MKGUEST");
	const char *paths[] = {env && *env ? env : NULL, VIREO_SOURCE_MKGUEST, VIREO_INSTALLED_MKGUEST};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (!paths[i] || access(paths[i], X_OK) < 0)
			continue;
		argv[0] = (char *)paths[i];
		execv(paths[i], argv);
		fprintf(stderr, "vireo: cannot run %s: %s\n", paths[i], strerror(errno));
		return VM_EXIT_SETUP_ERROR;
	}
	fprintf(stderr, "vireo: tools/mkguest not found (set VIREO_MKGUEST to its path)\n");
	return VM_EXIT_SETUP_ERROR;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return VM_EXIT_SETUP_ERROR;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("vireo %s\n", VIREO_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return vireo_run(argc - 2, argv + 2);
	if (!strcmp(argv[1], "user"))
		return vireo_user(argc - 2, argv + 2);
	if (!strcmp(argv[1], "mkguest"))
		return vireo_mkguest(argv + 1);
	if (argv[1][0] == '-') /* QEMU-style command line without a subcommand */
		return vireo_run(argc - 1, argv + 1);
	fprintf(stderr, "vireo: unknown command '%s' (see vireo --help)\n", argv[1]);
	return VM_EXIT_SETUP_ERROR;
}
