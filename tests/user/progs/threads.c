/* Threads: a mutex-protected counter, thread-local storage, join results. */
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static __thread long mine;

static void *work(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 20000; i++) {
		mine += id;
		pthread_mutex_lock(&lock);
		counter++;
		pthread_mutex_unlock(&lock);
	}
	return (void *)mine;
}

int main(void)
{
	pthread_t t[8];
	long total = 0;
	for (long i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, work, (void *)i);
	for (int i = 0; i < 8; i++) {
		void *r;
		pthread_join(t[i], &r);
		total += (long)r;
	}
	printf("counter %ld total %ld\n", counter, total);
	return 0;
}
