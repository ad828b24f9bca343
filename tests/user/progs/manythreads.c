/*
 * Many short threads, created and joined: memory does not grow with their
 * number (a thread's resources go with it).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long status_kb(const char *field)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			v = atol(line + strlen(field) + 1);
	if (f)
		fclose(f);
	return v;
}

static void *work(void *arg)
{
	long *p = arg;
	*p = *p * 2 + 1;
	return p;
}

int main(void)
{
	long sum = 0, rss = 0, vm = 0;
	for (long i = 0; i < 500; i++) {
		pthread_t t[4];
		long v[4];
		for (int k = 0; k < 4; k++) {
			v[k] = i + k;
			if (pthread_create(&t[k], NULL, work, &v[k])) {
				printf("pthread_create failed at %ld\n", i);
				return 1;
			}
		}
		for (int k = 0; k < 4; k++) {
			pthread_join(t[k], NULL);
			sum += v[k];
		}
		if (i == 49) {
			rss = status_kb("VmRSS:");
			vm = status_kb("VmSize:");
		}
	}
	long drss = status_kb("VmRSS:") - rss, dvm = status_kb("VmSize:") - vm;
	printf("2000 threads, sum %ld\n", sum);
	printf("RSS growth %s, VM growth %s\n", drss < 32 * 1024 ? "bounded" : "large",
	       dvm < 256 * 1024 ? "bounded" : "large");
	if (drss >= 32 * 1024 || dvm >= 256 * 1024)
		fprintf(stderr, "RSS +%ld kB, VM +%ld kB\n", drss, dvm);
	return 0;
}
