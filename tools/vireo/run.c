/*
 * vireo run: Vireo's own options and the common qemu-system-x86_64
 * spellings, so scripts written for QEMU run Vireo unchanged. An option
 * Vireo does not support is an error naming it, never ignored.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/vireo/vireo.h"
#include "vmm/vmm.h"

int option_fail(const char *fmt, const char *arg)
{
	fprintf(stderr, "vireo: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return -1;
}

/* "512", "512M", "2G", "1048576K"; a bare number is MiB as in QEMU. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	uint64_t mult = 1ull << 20;

	if (errno || end == s || !isdigit((unsigned char)*s))
		return -1;
	switch (toupper((unsigned char)*end)) {
	case 0: break;
	case 'K': mult = 1ull << 10; end++; break;
	case 'M': mult = 1ull << 20; end++; break;
	case 'G': mult = 1ull << 30; end++; break;
	case 'T': mult = 1ull << 40; end++; break;
	default: return -1;
	}
	if ((*end == 'B' || *end == 'b') && end[-1] != *s)
		end++;
	if (*end || v == 0 || v > (1ull << 50) / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static int parse_cpus(const char *s, unsigned *out)
{
	char *end;
	const char *p = strncmp(s, "cpus=", 5) ? s : s + 5;
	unsigned long v = strtoul(p, &end, 10);
	if (end == p || (*end && *end != ',') || v == 0 || v > 4096)
		return -1;
	if (*end == ',')
		return -1; /* sockets=, cores=, ...: not supported yet */
	*out = v;
	return 0;
}

static int set_engine(struct vm_config *cfg, const char *accel)
{
	if (!strcmp(accel, "tcg") || !strcmp(accel, "dbt"))
		cfg->engine = "dbt";
	else if (!strcmp(accel, "kvm"))
		cfg->engine = "kvm";
	else if (!strcmp(accel, "auto"))
		cfg->engine = "auto";
	else
		return option_fail("unknown accelerator '%s' (dbt/tcg, kvm or auto)", accel);
	return 0;
}

/* -machine: accel=X is the only property; a machine type other than pc/q35 is refused. */
static int parse_machine(struct vm_config *cfg, const char *spec)
{
	char *copy = strdup(spec), *save = NULL;
	int ret = 0;

	for (char *p = strtok_r(copy, ",", &save); p && !ret; p = strtok_r(NULL, ",", &save)) {
		if (!strncmp(p, "accel=", 6))
			ret = set_engine(cfg, p + 6);
		else if (!strncmp(p, "type=", 5) || !strchr(p, '='))
			ret = strcmp(strchr(p, '=') ? p + 5 : p, "pc") && strcmp(strchr(p, '=') ? p + 5 : p, "q35")
				      ? option_fail("unsupported machine type '%s' (Vireo's machine is a PC)", p)
				      : 0;
		else
			ret = option_fail("unsupported -machine property '%s'", p);
	}
	free(copy);
	return ret;
}

int option_add_device(struct vm_config *cfg, const char *spec)
{
	if (cfg->ndevices == VM_MAX_DEVICES) {
		fprintf(stderr, "vireo: too many devices (at most %d)\n", VM_MAX_DEVICES);
		return -1;
	}
	cfg->devices[cfg->ndevices++] = spec;
	return 0;
}

/* -device: the isa-debug-exit Vireo always has, at port 0xf4; any other
 * spec goes to the VM, which knows its device models (virtio-rng-pci,
 * virtio-serial-pci, virtconsole) and refuses the rest. */
static int parse_device(struct vm_config *cfg, const char *spec)
{
	char *copy = strdup(spec), *save = NULL;
	int ret = 0;
	char *p = strtok_r(copy, ",", &save);

	if (!p || strcmp(p, "isa-debug-exit")) {
		free(copy);
		return option_add_device(cfg, spec);
	}
	while (!ret && (p = strtok_r(NULL, ",", &save))) {
		if (!strncmp(p, "iobase=", 7)) {
			if (strtoul(p + 7, NULL, 0) != 0xf4)
				ret = option_fail("isa-debug-exit is at iobase=0xf4 in Vireo, not '%s'", p);
		} else if (!strncmp(p, "iosize=", 7)) {
			unsigned long n = strtoul(p + 7, NULL, 0);
			if (n != 1 && n != 2 && n != 4)
				ret = option_fail("isa-debug-exit: bad '%s'", p);
		} else {
			ret = option_fail("unsupported isa-debug-exit property '%s'", p);
		}
	}
	free(copy);
	return ret;
}

/* --console: where the guest's console is. serial: the 16550 (always
 * there); virtio: also a virtio console, hvc0 to Linux, on the same back end. */
static int parse_console(struct vm_config *cfg, const char *s)
{
	if (!strcmp(s, "serial"))
		return 0;
	if (!strcmp(s, "virtio"))
		return option_add_device(cfg, "virtio-serial-pci") || option_add_device(cfg, "virtconsole") ? -1 : 0;
	return option_fail("unknown console '%s' (serial or virtio)", s);
}

static int parse_serial(struct vm_config *cfg, const char *s)
{
	if (!strcmp(s, "stdio") || !strcmp(s, "none") || !strcmp(s, "null") || !strncmp(s, "file:", 5)) {
		cfg->serial = !strcmp(s, "null") ? "none" : s;
		return 0;
	}
	return option_fail("unsupported serial back end '%s' (stdio, none or file:PATH)", s);
}

/* Takes "--name=value", "--name value", "-name value". */
static const char *option_value(int argc, char **argv, int *i, const char *arg)
{
	const char *eq = strchr(arg, '=');
	if (arg[0] == '-' && arg[1] == '-' && eq)
		return eq + 1;
	if (*i + 1 >= argc) {
		option_fail("option '%s' needs a value", arg);
		return NULL;
	}
	return argv[++*i];
}

static bool is(const char *arg, const char *name)
{
	size_t n = strlen(name);
	return !strcmp(arg, name) || (!strncmp(arg, name, n) && arg[n] == '=' && arg[1] == '-');
}

int vireo_run(int argc, char **argv)
{
	struct vm_config cfg = {.memory = 128ull << 20, .cpus = 1, .engine = "auto", .serial = "stdio"};
	char err[512] = "";
	bool serial_set = false;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		int bad = 0;

		if (is(a, "--kernel") || is(a, "-kernel")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			cfg.kernel = v;
		} else if (is(a, "--initrd") || is(a, "-initrd")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			cfg.initrd = v;
		} else if (is(a, "--cmdline") || is(a, "-append")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			cfg.cmdline = v;
		} else if (is(a, "--memory") || is(a, "-m")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			if (parse_size(strncmp(v, "size=", 5) ? v : v + 5, &cfg.memory) < 0)
				bad = option_fail("bad memory size '%s' (for example 512M or 2G)", v);
		} else if (is(a, "--cpus") || is(a, "-smp")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			if (parse_cpus(v, &cfg.cpus) < 0)
				bad = option_fail("bad vCPU count '%s' (a number; topology options are not supported)", v);
		} else if (is(a, "--engine") || is(a, "-accel")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = set_engine(&cfg, v);
		} else if (is(a, "-machine") || is(a, "-M")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = parse_machine(&cfg, v);
		} else if (is(a, "--serial") || is(a, "-serial")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = parse_serial(&cfg, v);
			serial_set = true;
		} else if (is(a, "-device") || is(a, "--device")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = parse_device(&cfg, v);
		} else if (is(a, "-drive") || is(a, "--drive")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = option_drive(&cfg, v);
		} else if (is(a, "--disk")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = option_disk(&cfg, v);
		} else if (is(a, "-netdev") || is(a, "--netdev")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = option_netdev(&cfg, v);
		} else if (is(a, "-nic")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = option_nic(&cfg, v);
		} else if (is(a, "--net")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = option_net(&cfg, v);
		} else if (is(a, "--console")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			bad = parse_console(&cfg, v);
		} else if (is(a, "-display")) {
			if (!(v = option_value(argc, argv, &i, a)))
				return VM_EXIT_SETUP_ERROR;
			if (strcmp(v, "none"))
				bad = option_fail("unsupported display '%s' (Vireo has no display yet: -display none)", v);
		} else if (!strcmp(a, "-nographic")) {
			if (!serial_set)
				cfg.serial = "stdio";
		} else if (!strcmp(a, "-no-reboot") || !strcmp(a, "--no-reboot")) {
			cfg.no_reboot = true;
		} else if (!strcmp(a, "--stats")) {
			cfg.stats = true;
		} else if (!strcmp(a, "-nodefaults")) {
			/* Vireo adds no default NIC, display or drives to begin with. */
		} else if (!strcmp(a, "-enable-kvm")) {
			cfg.engine = "kvm";
		} else {
			fprintf(stderr, "vireo: unsupported option '%s'\n", a);
			return VM_EXIT_SETUP_ERROR;
		}
		if (bad)
			return VM_EXIT_SETUP_ERROR;
	}
	if (!cfg.kernel) {
		fprintf(stderr, "vireo: no kernel given (--kernel PATH)\n");
		return VM_EXIT_SETUP_ERROR;
	}

	struct vm *vm = vm_create(&cfg, err, sizeof(err));
	if (!vm) {
		fprintf(stderr, "vireo: %s\n", err);
		return VM_EXIT_SETUP_ERROR;
	}
	uint64_t start = clock_now_ns();
	int status = vm_run(vm, err, sizeof(err));
	if (cfg.stats)
		vm_print_stats(vm, (clock_now_ns() - start) / 1e9);
	if (status != VM_EXIT_POWEROFF && !(status & 1))
		fprintf(stderr, "vireo: %s\n", err);
	vm_destroy(vm);
	return status;
}
