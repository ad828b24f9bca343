/*
 * User mode: x86-64 Linux programs run under the translator in this process
 * (`vireo user PROG ARGS`). The program's memory is this process's memory
 * (identity), its system calls are this process's, translated where the
 * translator must know (memory maps, threads, signals, exec, FS/GS bases).
 * docs/dbt-translator.md, "User mode".
 */
#ifndef VIREO_DBT_USER_H
#define VIREO_DBT_USER_H

#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How to start the program. */
struct user_options {
	const char *path;  /* the executable (a path, not looked up in PATH) */
	char **argv;	   /* its argv, argv[0] included */
	char **envp;	   /* its environment */
	const char *vireo; /* this vireo executable, for execve under vireo */
};

/* Loads and runs the program; returns only when it cannot start, with the
 * exit status the kernel's execve failure would have led a shell to (126,
 * 127), after saying why on stderr. The program's own exit ends the process. */
int user_run(const struct user_options *opt);

/* ---- between the front end's files ---------------------------------- */

struct xlat_ctx;

/* The loaded program (elf.c). */
struct user_image {
	uint64_t entry; /* the program's entry point (AT_ENTRY) */
	uint64_t start; /* where execution begins: the interpreter's entry or entry */
	uint64_t phdr;	/* its program headers in memory (AT_PHDR) */
	uint64_t phnum, phent;
	uint64_t interp_base; /* AT_BASE: the interpreter's load address, 0 without one */
	uint64_t brk;	      /* the end of the program's highest segment */
};

/* Maps the program (and its PT_INTERP interpreter) as execve does: 0, or
 * -ENOEXEC (not a valid x86-64 ELF; *why says what), -ENOENT, -EACCES... */
int user_elf_load(const char *path, struct user_image *img, const char **why);

/* Builds the initial stack (argc, argv, envp, auxv, strings) as the kernel
 * does; returns the initial RSP or 0 (out of memory). */
uint64_t user_stack_build(const struct user_image *img, char **argv, char **envp, const char *execfn);

/* What the guest may execute (maps.c): its mappings' protections. */
void user_maps_set(uint64_t addr, uint64_t len, int prot);
int user_maps_prot(uint64_t addr);
size_t user_maps_fetchable(void *opaque, uint64_t addr, size_t len);
/* The translator's code_page callback: write-protects pages holding
 * translated code on the host while the guest may write them. */
void user_maps_code_page(void *opaque, uint64_t page, bool code);
/* A host write fault at addr: true when it was such a page (its
 * translations are dropped, write access restored: retry the write). */
bool user_smc_fault(uint64_t addr);
/* The host's own vDSO, which the guest shares. */
void user_maps_add_vdso(void);

/* The program's break (brk), emulated over anonymous mappings. */
void user_brk_init(uint64_t start);
uint64_t user_brk_set(uint64_t want);

/* The guest's signal dispositions: one table per guest process (the
 * threads of a process share it; a vfork child gets a copy). */
struct user_actions;

/* One guest thread. */
struct user_thread {
	struct xlat_ctx *ctx;
	int tid;
	/* Signals caught by the host handler, not yet delivered (bit sig-1). */
	uint64_t pending;
	siginfo_t pending_info[65];
	/* The guest's signal mask (bit sig-1). The host thread's mask is the
	 * same but for SIGSEGV, SIGBUS and SIGTRAP, which vireo needs: those
	 * sent while the guest blocks them wait here until it unblocks them. */
	uint64_t mask;
	uint64_t deferred;
	struct user_actions *actions;
	uint64_t fault_rip;  /* set by the handler for a fault in guest code */
	stack_t altstack;    /* the guest's sigaltstack (ss_size 0: none) */
	void *host_altstack; /* the host handler's stack (malloc), NULL: inherited */
	/* The interpreter for what the translator cannot run (interp.c). */
	struct dbt_cpu *interp;
	volatile bool in_interp; /* a host fault now is the interpreted instruction's */
	volatile bool interp_faulted;
	volatile bool smc_step; /* single-stepping out of a block that wrote its own page */
	uint64_t smc_retry;	/* the page of write faults that found no translations | retries left */
	siginfo_t interp_info;	/* that host fault */
	sigset_t interp_mask;	/* the signal mask it interrupted */
	/* How the thread ends (thread.c): a thread made by pthread_create
	 * returns to it (exit_jmp), so that its host stack is freed, after
	 * clearing the guest's clear-TID word by hand; a vfork child leaves
	 * its state to the parent, which waits for its exec or exit. */
	bool pthread;
	bool vfork_child;
	uint64_t clear_tid;
	jmp_buf exit_jmp;
};

/* The calling thread's (NULL in threads that run no guest code). */
struct user_thread *user_current_thread(void);
void user_set_current(struct user_thread *t);

/* Signals (signal.c). */
void user_signal_init(struct user_thread *main_thread);
/* The host handler's own stack for a new thread; freed at its exit. */
void user_signal_thread_init(struct user_thread *t);
void user_signal_thread_fini(struct user_thread *t);
/* A vfork child's copy of its parent's dispositions (free() it). */
struct user_actions *user_actions_copy(const struct user_actions *a);
/* Sets the guest's signal mask of t (the calling thread). */
void user_set_mask(struct user_thread *t, uint64_t mask);
long user_rt_sigprocmask(struct user_thread *t, int how, uint64_t set, uint64_t oset, uint64_t size);
/* Around execve: the host mask and ignored faults become the guest's, as
 * the new program inherits them; back if the execve failed. */
void user_signal_exec(struct user_thread *t, bool before);
/* A fault of a guest instruction: queued for the guest's handler, or the
 * default death when it has none (or blocks the signal). */
void user_raise_fault(struct user_thread *t, const siginfo_t *info);
long user_rt_sigaction(struct user_thread *t, int sig, uint64_t act, uint64_t oact, uint64_t size);
long user_sigaltstack(struct user_thread *t, uint64_t ss, uint64_t old);
/* Enters the guest handlers of t's pending signals (frames on its stack). */
void user_deliver_signals(struct user_thread *t);
/* rt_sigreturn: the state from the frame at the guest RSP. */
void user_rt_sigreturn(struct user_thread *t);

/* The run loop of a thread: never returns (the guest exits through a
 * system call or a signal). */
_Noreturn void user_loop(struct user_thread *t);

/* XEXIT_UNSUPPORTED: the instruction at ctx->rip runs in the interpreter
 * over the guest state (interp.c). */
void user_interpret(struct user_thread *t);

/* The SYSCALL the translator sent to the runtime (syscall.c): performs it
 * with the guest's registers in t->ctx, leaves the result in RAX. */
void user_syscall(struct user_thread *t);
/* The numbers user_syscall wants to see. */
extern const uint16_t user_syscalls[];
extern const size_t user_syscall_count;

/* clone and fork (thread.c). */
long user_clone(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid, uint64_t tls);
/* SYS_exit of one thread. */
_Noreturn void user_thread_exit(struct user_thread *t, int status);
/* set_tid_address: the word the kernel (or thread exit) clears. */
long user_set_tid_address(struct user_thread *t, uint64_t addr);

/* System calls the guest makes that write its memory through buffers
 * (read, recvmsg, getrandom...), once pages holding code are write-protected
 * (sysbuf.c): the code pages in their buffers are unprotected first. */
void user_sysbuf_enable(void);
bool user_sysbuf_handles(uint64_t nr);
long user_sysbuf_syscall(uint64_t nr, const uint64_t *a);
/* Drops the translations of write-protected code pages in [addr, addr +
 * len) (maps.c); returns how many pages held code. */
unsigned user_maps_unprotect(uint64_t addr, uint64_t len);

/* Guest memory the runtime reads or writes on the guest's behalf: a bad
 * address is -EFAULT, as the kernel would say, never a crash (memory.c). */
int user_read(void *dst, uint64_t src, size_t len);
int user_write(void *dst, const void *src, size_t len);
/* A NUL-terminated string of at most size bytes (-ENAMETOOLONG beyond). */
int user_read_string(char *dst, size_t size, uint64_t src);

void user_print_stats(void);

/* The guest dies of sig as it would natively (default action). */
_Noreturn void user_die(int sig);

/* Set once at start. */
extern const char *user_exe_path; /* the guest program, absolute */
extern const char *user_vireo_path;

long user_syscall6(long nr, long a, long b, long c, long d, long e, long f);

#endif
