/*
 * dbt-diff: differential instruction tests. Generated cases run on the host
 * CPU (the oracle) and on every other engine from the same state; each
 * instruction form prints one PASS or FAIL line, mismatches print the case
 * and the differing fields, and the exit status is 1 if anything differed.
 *
 * Usage: dbt-diff [--full] [--cap N] [--seed N] [--sample N] [--filter TEXT]...
 *                 [--engine NAME]... [--details N] [--list]
 *   --full       every combination of edge values, up to --cap per form
 *   --sample N   cases per form otherwise (at least one per edge value)
 *   --filter T   only forms whose name contains T (repeatable)
 *   --engine E   compare only engine E with the host (repeatable; default all)
 *   --details N  mismatching cases printed in full per form (default 3)
 *   --list       print the forms and their case counts, run nothing
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diff.h"

#define CHUNK 1024

static const struct diff_engine *const engines[] = {&diff_engine_native, &diff_engine_interp, &diff_engine_xlat};
#define NENGINES (sizeof(engines) / sizeof(engines[0]))

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What the interpreter's CPUID says, asked through cases. */
static int query_cpuid(struct runner *interp, struct diff_case *cases, struct diff_cpuid *out)
{
	static const uint32_t leaves[3] = {1, 7, 0x80000001};
	const struct diff_result *res = runner_results(interp);
	for (unsigned i = 0; i < 3; i++)
		diff_cpuid_case(&cases[i], leaves[i]);
	runner_run(&interp, 1, 3);
	for (unsigned i = 0; i < 3; i++)
		if (res[i].status != DIFF_STOP) {
			fprintf(stderr, "dbt-diff: CPUID through the interpreter did not complete: %s\n",
				res[i].message);
			return -1;
		}
	out->ecx1 = (uint32_t)res[0].st.gpr[RCX];
	out->edx1 = (uint32_t)res[0].st.gpr[RDX];
	out->ebx7 = (uint32_t)res[1].st.gpr[RBX];
	out->ecx81 = (uint32_t)res[2].st.gpr[RCX];
	out->edx81 = (uint32_t)res[2].st.gpr[RDX];
	return 0;
}

struct form_stats {
	uint32_t cases, failed, printed;
	char *details;
	size_t details_len;
	FILE *out;
};

static void usage(void)
{
	fprintf(stderr, "usage: dbt-diff [--full] [--cap N] [--seed N] [--sample N] [--filter TEXT]... "
			"[--engine NAME]... [--details N] [--list]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const char *filters[64];
	struct diff_gen_options o = {.seed = 1, .sample = 128, .full_cap = 4096, .filters = filters};
	bool selected[NENGINES] = {true}, any_selected = false, list = false;
	unsigned max_details = 3;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--full")) {
			o.full = true;
		} else if (!strcmp(a, "--list")) {
			list = true;
		} else if (v && !strcmp(a, "--seed")) {
			o.seed = strtoull(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--sample")) {
			o.sample = (unsigned)strtoul(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--cap")) {
			o.full_cap = (unsigned)strtoul(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--details")) {
			max_details = (unsigned)strtoul(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--filter") && o.nfilters < 64) {
			filters[o.nfilters++] = v;
			i++;
		} else if (v && !strcmp(a, "--engine")) {
			unsigned e = 1;
			while (e < NENGINES && strcmp(engines[e]->name, v))
				e++;
			if (e == NENGINES)
				usage();
			selected[e] = any_selected = true;
			i++;
		} else {
			usage();
		}
	}
	for (unsigned e = 1; e < NENGINES; e++)
		selected[e] |= !any_selected;
	setvbuf(stdout, NULL, _IOLBF, 0);
	uint64_t t0 = now_ns();

	struct diff_case *cases = diff_shared(CHUNK * sizeof(*cases));
	struct runner *runners[NENGINES], *run[NENGINES];
	const struct diff_result *res[NENGINES];
	unsigned nrun = 0;
	for (unsigned e = 0; e < NENGINES; e++) {
		runners[e] = runner_new(engines[e], cases, CHUNK);
		res[e] = runner_results(runners[e]);
		if (selected[e])
			run[nrun++] = runners[e];
	}

	struct diff_cpuid cpuid;
	if (query_cpuid(runners[1], cases, &cpuid))
		return 2;
	unsigned nforms = diff_forms_init(&o, &cpuid);
	if (list) {
		for (unsigned f = 0; f < nforms; f++) {
			const struct diff_form_info *fi = diff_form(f);
			if (fi->skipped)
				printf("%-48s skipped: %s\n", fi->name, fi->skip_why);
			else
				printf("%-48s %u cases\n", fi->name, fi->ncases);
		}
		return 0;
	}

	struct form_stats *stats = calloc(nforms, sizeof(*stats));
	uint64_t outcomes[33] = {0}; /* the oracle's: vectors 0-31, then the end reached */
	unsigned passed = 0, failed = 0, skipped = 0, next_form = 0, reported = 0;
	uint64_t total = 0, differing = 0;
	uint32_t next_case = 0;
	char err[256];

	while (reported < nforms) {
		/* A chunk of cases, form after form. */
		uint32_t n = 0;
		while (n < CHUNK && next_form < nforms) {
			if (next_case >= diff_form(next_form)->ncases) {
				next_form++;
				next_case = 0;
				continue;
			}
			if (diff_generate(next_form, next_case++, &cases[n++], err, sizeof(err))) {
				fprintf(stderr, "dbt-diff: %s\n", err);
				return 2;
			}
		}
		if (n)
			runner_run(run, nrun, n);
		for (uint32_t i = 0; i < n; i++) {
			const struct diff_case *c = &cases[i];
			struct form_stats *fs = &stats[c->form];
			bool bad = false;
			fs->cases++;
			total++;
			outcomes[res[0][i].status == DIFF_FAULT ? res[0][i].vector & 31 : 32]++;
			for (unsigned e = 1; e < NENGINES; e++) {
				if (!selected[e] ||
				    !diff_compare(c, &res[0][i], engines[0]->name, &res[e][i], engines[e]->name, NULL))
					continue;
				bad = true;
				if (fs->printed >= max_details)
					continue;
				if (!fs->out)
					fs->out = open_memstream(&fs->details, &fs->details_len);
				diff_print_case(c, fs->out);
				fprintf(fs->out, "    differences (%s vs %s):\n", engines[0]->name, engines[e]->name);
				diff_compare(c, &res[0][i], engines[0]->name, &res[e][i], engines[e]->name, fs->out);
			}
			if (bad) {
				fs->failed++;
				differing++;
				fs->printed += fs->printed < max_details;
			}
		}
		/* The forms whose cases have all been compared. */
		for (; reported < nforms && (reported < next_form || next_form == nforms); reported++) {
			const struct diff_form_info *fi = diff_form(reported);
			struct form_stats *fs = &stats[reported];
			if (fi->skipped) {
				printf("SKIP %s (%s)\n", fi->name, fi->skip_why);
				skipped++;
			} else if (fs->failed) {
				fflush(fs->out);
				printf("FAIL %s (%u of %u cases differ)\n%s", fi->name, fs->failed, fs->cases,
				       fs->details);
				failed++;
			} else {
				printf("PASS %s (%u cases)\n", fi->name, fs->cases);
				passed++;
			}
			if (fs->out) {
				fclose(fs->out);
				free(fs->details);
			}
		}
	}
	for (unsigned e = 0; e < NENGINES; e++)
		runner_free(runners[e]);
	free(stats);

	printf("%s outcomes:", engines[0]->name);
	for (unsigned v = 0; v < 33; v++)
		if (outcomes[v])
			printf(v == 32 ? " %llu reached the end" : " %llu vector %u,", (unsigned long long)outcomes[v],
			       v);
	printf("\n%u passed, %u failed, %u skipped (forms); %llu cases, %llu differ; %.1f s\n", passed, failed, skipped,
	       (unsigned long long)total, (unsigned long long)differing, (double)(now_ns() - t0) / 1e9);
	return failed ? 1 : 0;
}
