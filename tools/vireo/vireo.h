/* The vireo command's subcommands. */
#ifndef VIREO_TOOLS_VIREO_H
#define VIREO_TOOLS_VIREO_H

/* vireo run: boots a guest; returns the process exit status. */
int vireo_run(int argc, char **argv);

/* vireo user: runs a Linux program under the translator; returns only when
 * it cannot start it. */
int vireo_user(int argc, char **argv);

/* ---- vireo run's options, one file per kind (run.c, disk.c, net.c) ---- */

struct vm_config;
/* Prints "vireo: " and fmt with arg; returns -1. */
int option_fail(const char *fmt, const char *arg);
/* Appends a -device spec (the string must outlive the VM). */
int option_add_device(struct vm_config *cfg, const char *spec);
/* -drive SPEC and --disk PATH[,readonly][,format=F]. */
int option_drive(struct vm_config *cfg, const char *spec);
int option_disk(struct vm_config *cfg, const char *spec);
/* -netdev SPEC, -nic SPEC and --net user|tap:IFNAME[,PROPS]. */
int option_netdev(struct vm_config *cfg, const char *spec);
int option_nic(struct vm_config *cfg, const char *spec);
int option_net(struct vm_config *cfg, const char *spec);

#endif
