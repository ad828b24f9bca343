/* The vireo command's subcommands. */
#ifndef VIREO_TOOLS_VIREO_H
#define VIREO_TOOLS_VIREO_H

/* vireo run: boots a guest; returns the process exit status. */
int vireo_run(int argc, char **argv);

/* vireo user: runs a Linux program under the translator; returns only when
 * it cannot start it. */
int vireo_user(int argc, char **argv);

#endif
