/* vireo run's disk options: -drive (QEMU's spelling) and --disk. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/vireo/vireo.h"
#include "vmm/vmm.h"

/* What -drive specs and their generated -device specs point at: static, so
 * they live as long as the VM. */
static char *drive_specs[VM_MAX_DRIVES];
static char drive_devices[VM_MAX_DRIVES][80];

static bool is_on(const char *v)
{
	return !strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes");
}

static bool is_off(const char *v)
{
	return !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no");
}

/* A disk image: if=virtio gets its own virtio-blk device; if=none waits
 * for a -device virtio-blk-pci,drive=ID. */
static int add_drive(struct vm_config *cfg, char *copy, const char *file, const char *format, bool read_only,
		     const char *id, bool virtio)
{
	struct vm_drive *d;
	unsigned n = cfg->ndrives;
	char auto_id[16];

	if (n == VM_MAX_DRIVES) {
		free(copy);
		fprintf(stderr, "vireo: too many drives (at most %d)\n", VM_MAX_DRIVES);
		return -1;
	}
	if (!file || !*file) {
		free(copy);
		fprintf(stderr, "vireo: a drive needs an image: -drive file=PATH or --disk PATH\n");
		return -1;
	}
	if (!id) {
		snprintf(auto_id, sizeof(auto_id), "virtio%u", n);
		id = auto_id;
	}
	if (strlen(id) > 32 || strpbrk(id, ",= ")) {
		option_fail("-drive: bad id '%s' (at most 32 characters, no ',' '=' or space)", id);
		free(copy);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!strcmp(cfg->drives[i].id, id)) {
			option_fail("-drive: id '%s' is used by two drives", id);
			free(copy);
			return -1;
		}
	}
	d = &cfg->drives[n];
	snprintf(drive_devices[n], sizeof(drive_devices[n]), "virtio-blk-pci,drive=%s", id);
	drive_specs[n] = copy;
	*d = (struct vm_drive){.id = drive_devices[n] + strlen("virtio-blk-pci,drive="),
			       .file = file,
			       .format = format,
			       .read_only = read_only};
	cfg->ndrives++;
	return virtio ? option_add_device(cfg, drive_devices[n]) : 0;
}

/* -drive file=PATH[,format=raw|qcow2][,if=virtio|none][,readonly=on|off][,id=ID].
 * Vireo has no IDE: without if=, a drive is a virtio disk. */
int option_drive(struct vm_config *cfg, const char *spec)
{
	char *copy = strdup(spec), *save = NULL;
	const char *file = NULL, *format = NULL, *id = NULL;
	bool read_only = false, virtio = true;

	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		char *v = strchr(p, '=');

		if (v)
			*v++ = 0;
		if (!strcmp(p, "file") && v) {
			file = v;
		} else if (!strcmp(p, "format") && v) {
			format = v;
		} else if (!strcmp(p, "id") && v) {
			id = v;
		} else if (!strcmp(p, "if") && v && (!strcmp(v, "virtio") || !strcmp(v, "none"))) {
			virtio = !strcmp(v, "virtio");
		} else if (!strcmp(p, "readonly") && (!v || is_on(v) || is_off(v))) {
			read_only = !v || is_on(v);
		} else if (!strcmp(p, "if") && v) {
			option_fail("-drive: unsupported interface 'if=%s' (virtio or none)", v);
			free(copy);
			return -1;
		} else {
			option_fail("-drive: unsupported property '%s'", p);
			free(copy);
			return -1;
		}
	}
	return add_drive(cfg, copy, file, format, read_only, id, virtio);
}

/* --disk PATH[,readonly][,format=F]: a virtio disk. */
int option_disk(struct vm_config *cfg, const char *spec)
{
	char *copy = strdup(spec), *save = NULL;
	char *file = strtok_r(copy, ",", &save);
	const char *format = NULL;
	bool read_only = false;

	for (char *p = strtok_r(NULL, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (!strcmp(p, "readonly") || !strcmp(p, "ro")) {
			read_only = true;
		} else if (!strncmp(p, "format=", 7)) {
			format = p + 7;
		} else {
			option_fail("--disk: unsupported property '%s' (readonly, format=raw|qcow2)", p);
			free(copy);
			return -1;
		}
	}
	return add_drive(cfg, copy, file, format, read_only, NULL, true);
}
