/* The VM's clock thread: runs device timer callbacks at their deadlines. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "vmm/internal.h"

uint64_t clock_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

void timer_init(struct vm_timer *t, void (*fire)(void *), void *opaque)
{
	*t = (struct vm_timer){.fire = fire, .opaque = opaque};
}

static void timer_remove_locked(struct clock *c, struct vm_timer *t)
{
	for (unsigned i = 0; i < c->count; i++) {
		if (c->timers[i] == t) {
			c->timers[i] = c->timers[--c->count];
			break;
		}
	}
	t->armed = false;
}

void timer_arm(struct vm *vm, struct vm_timer *t, uint64_t deadline_ns)
{
	struct clock *c = &vm->clock;

	pthread_mutex_lock(&c->lock);
	if (!t->armed) {
		if (c->count == c->cap) {
			unsigned cap = c->cap ? 2 * c->cap : 16;
			struct vm_timer **n = realloc(c->timers, cap * sizeof(*n));
			if (!n) {
				pthread_mutex_unlock(&c->lock);
				vmm_log("out of memory arming a timer");
				return;
			}
			c->timers = n;
			c->cap = cap;
		}
		c->timers[c->count++] = t;
	}
	t->armed = true;
	t->deadline_ns = deadline_ns;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void timer_cancel(struct vm *vm, struct vm_timer *t)
{
	struct clock *c = &vm->clock;

	pthread_mutex_lock(&c->lock);
	if (t->armed)
		timer_remove_locked(c, t);
	pthread_mutex_unlock(&c->lock);
}

static void *clock_thread(void *arg)
{
	struct clock *c = &((struct vm *)arg)->clock;

	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		uint64_t now = clock_now_ns(), next = UINT64_MAX;
		struct vm_timer *due = NULL;

		for (unsigned i = 0; i < c->count; i++) {
			if (c->timers[i]->deadline_ns <= now) {
				due = c->timers[i];
				break;
			}
			if (c->timers[i]->deadline_ns < next)
				next = c->timers[i]->deadline_ns;
		}
		if (due) {
			/* Callbacks run unlocked: they may re-arm or cancel timers. */
			timer_remove_locked(c, due);
			pthread_mutex_unlock(&c->lock);
			due->fire(due->opaque);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (next == UINT64_MAX) {
			pthread_cond_wait(&c->cond, &c->lock);
		} else {
			struct timespec ts = {next / 1000000000ull, next % 1000000000ull};
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

void clock_init(struct vm *vm)
{
	struct clock *c = &vm->clock;
	pthread_condattr_t attr;

	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &attr);
	pthread_condattr_destroy(&attr);
}

int clock_start(struct vm *vm)
{
	struct clock *c = &vm->clock;
	int ret = pthread_create(&c->thread, NULL, clock_thread, vm);
	c->running = ret == 0;
	return -ret;
}

void clock_stop(struct vm *vm)
{
	struct clock *c = &vm->clock;

	if (!c->running)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	c->running = false;
}

void clock_clear(struct vm *vm)
{
	pthread_mutex_lock(&vm->clock.lock);
	for (unsigned i = 0; i < vm->clock.count; i++)
		vm->clock.timers[i]->armed = false;
	vm->clock.count = 0;
	vm->clock.stop = false;
	pthread_mutex_unlock(&vm->clock.lock);
}

void clock_destroy(struct vm *vm)
{
	free(vm->clock.timers);
	pthread_mutex_destroy(&vm->clock.lock);
	pthread_cond_destroy(&vm->clock.cond);
}
