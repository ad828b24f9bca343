/* vireo: the command-line front end. */
#include <stdio.h>
#include <string.h>

#include "tools/vireo/vireo.h"
#include "vmm/vmm.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vireo run --kernel PATH [--initrd PATH] [--cmdline STR] [--memory SIZE]\n"
		   "                 [--cpus N] [--engine dbt|kvm|auto] [--serial stdio|none|file:PATH]\n"
		   "                 [--console serial|virtio] [--device SPEC]... [--stats]\n"
		   "       vireo -kernel PATH [qemu-system-x86_64 options]   (the common QEMU spellings)\n"
		   "       vireo --help | --version\n");
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
	if (argv[1][0] == '-') /* QEMU-style command line without a subcommand */
		return vireo_run(argc - 1, argv + 1);
	fprintf(stderr, "vireo: unknown command '%s' (see vireo --help)\n", argv[1]);
	return VM_EXIT_SETUP_ERROR;
}
