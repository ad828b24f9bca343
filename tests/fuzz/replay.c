/*
 * A libFuzzer target's inputs without libFuzzer, for `make check`: runs
 * every file in the directories named, then as many variants of each with
 * a few bytes changed (a fixed pseudo-random sequence). The targets thus
 * build and run with gcc and in the sanitizer build too; `make fuzz` is
 * where they are fuzzed for real.
 *   replay DIR... [--mutate N]
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define INPUT_MAX (1 << 20)

static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;

static unsigned long long rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static size_t load(const char *path, unsigned char *buf)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		exit(1);
	}
	n = fread(buf, 1, INPUT_MAX, f);
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	static unsigned char input[INPUT_MAX], variant[INPUT_MAX];
	unsigned long mutate = 0, runs = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--mutate") && i + 1 < argc)
			mutate = strtoul(argv[i + 1], NULL, 0);
	for (int i = 1; i < argc; i++) {
		DIR *dir;
		struct dirent *e;

		if (!strcmp(argv[i], "--mutate")) {
			i++;
			continue;
		}
		dir = opendir(argv[i]);
		if (!dir) {
			perror(argv[i]);
			return 1;
		}
		while ((e = readdir(dir))) {
			char path[4096];
			size_t n;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			n = load(path, input);
			LLVMFuzzerTestOneInput(input, n);
			runs++;
			for (unsigned long m = 0; m < mutate && n; m++) {
				memcpy(variant, input, n);
				for (unsigned k = 1 + rng() % 4; k; k--)
					variant[rng() % n] ^= 1u << (rng() % 8);
				LLVMFuzzerTestOneInput(variant, n);
				runs++;
			}
		}
		closedir(dir);
	}
	printf("PASS replayed %lu inputs\nDONE 1 checks, 0 failed\n", runs);
	return runs ? 0 : 1;
}
