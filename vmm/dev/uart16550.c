/* The 16550A UART at 0x3f8 (COM1, ISA IRQ 4): the serial console. Input
 * from the console (console.c) is taken when the receive FIFO has room:
 * every RX_POLL_NS on the clock thread and whenever the guest empties it. */
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

#define COM1_BASE 0x3f8
#define COM1_IRQ 4
#define FIFO_SIZE 16
#define RX_POLL_NS 10000000ull

enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

#define IER_RDI 0x01  /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_RLSI 0x04
#define IER_MSI 0x08
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define MCR_OUT2 0x08

struct uart {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thr_interrupt; /* THR-empty interrupt pending until IIR read or THR write */
	uint8_t rx[FIFO_SIZE];
	unsigned rx_head, rx_count;
	bool irq_level;
	struct vm_timer rx_poll;
};

static uint8_t uart_iir(struct uart *u)
{
	uint8_t fifo = u->fcr & 1 ? IIR_FIFO : 0;
	if ((u->ier & IER_RDI) && u->rx_count)
		return IIR_RDI | fifo;
	if ((u->ier & IER_THRI) && u->thr_interrupt)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* Called with the lock held; returns the new line level for the caller to
 * apply after unlocking. */
static bool uart_update_irq(struct uart *u)
{
	u->irq_level = !(uart_iir(u) & IIR_NONE);
	return u->irq_level;
}

static void uart_rx_push(struct uart *u, uint8_t c)
{
	if (u->rx_count < FIFO_SIZE)
		u->rx[(u->rx_head + u->rx_count++) % FIFO_SIZE] = c;
}

/* Moves console input into the receive FIFO while it has room. Lock held. */
static void uart_rx_fill(struct uart *u)
{
	uint8_t buf[FIFO_SIZE];

	if (u->mcr & MCR_LOOP)
		return;
	size_t n = console_read(u->vm, buf, FIFO_SIZE - u->rx_count);
	for (size_t i = 0; i < n; i++)
		uart_rx_push(u, buf[i]);
}

static void uart_rx_poll(void *opaque)
{
	struct uart *u = opaque;
	bool level;

	pthread_mutex_lock(&u->lock);
	uart_rx_fill(u);
	level = uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	irq_set_level(u->vm, COM1_IRQ, level);
	if (console_has_input(u->vm))
		timer_arm(u->vm, &u->rx_poll, clock_now_ns() + RX_POLL_NS);
}

static uint64_t uart_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct uart *u = opaque;
	uint8_t v = 0;
	bool level;
	(void)vcpu;
	(void)size;

	pthread_mutex_lock(&u->lock);
	switch (offset) {
	case RBR_THR:
		if (u->lcr & LCR_DLAB) {
			v = u->dll;
		} else if (u->rx_count) {
			v = u->rx[u->rx_head];
			u->rx_head = (u->rx_head + 1) % FIFO_SIZE;
			if (--u->rx_count == 0)
				uart_rx_fill(u);
		}
		break;
	case IER:
		v = u->lcr & LCR_DLAB ? u->dlm : u->ier;
		break;
	case IIR_FCR:
		v = uart_iir(u);
		if ((v & 0x0f) == IIR_THRI)
			u->thr_interrupt = false;
		break;
	case LCR:
		v = u->lcr;
		break;
	case MCR:
		v = u->mcr;
		break;
	case LSR:
		v = LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0);
		break;
	case MSR:
		if (u->mcr & MCR_LOOP) /* DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
			v = ((u->mcr & 1) << 5) | ((u->mcr & 2) << 3) | ((u->mcr & 4) << 4) | ((u->mcr & 8) << 4);
		else
			v = 0xb0; /* DCD, DSR, CTS */
		break;
	case SCR:
		v = u->scr;
		break;
	}
	level = uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	irq_set_level(u->vm, COM1_IRQ, level);
	return v;
}

static void uart_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct uart *u = opaque;
	uint8_t v = value;
	bool level, out = false;
	(void)vcpu;
	(void)size;

	pthread_mutex_lock(&u->lock);
	switch (offset) {
	case RBR_THR:
		if (u->lcr & LCR_DLAB) {
			u->dll = v;
		} else if (u->mcr & MCR_LOOP) {
			uart_rx_push(u, v);
			u->thr_interrupt = true;
		} else {
			out = true;
			u->thr_interrupt = true; /* sent at once: the THR is empty again */
		}
		break;
	case IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
		} else {
			if (!(u->ier & IER_THRI) && (v & IER_THRI))
				u->thr_interrupt = true;
			u->ier = v & 0x0f;
		}
		break;
	case IIR_FCR:
		u->fcr = v & 0xc9;
		if (v & 0x02) /* clear the receive FIFO */
			u->rx_count = 0;
		break;
	case LCR:
		u->lcr = v;
		break;
	case MCR:
		u->mcr = v & 0x1f;
		break;
	case SCR:
		u->scr = v;
		break;
	}
	level = uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	if (out)
		console_write(u->vm, &v, 1);
	irq_set_level(u->vm, COM1_IRQ, level);
}

static const struct bus_ops uart_ops = {uart_read, uart_write};

static struct uart *the_uart(struct vm *vm)
{
	return vm->devices[DEVICE_SLOT_UART];
}

static int uart_init(struct vm *vm)
{
	struct uart *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->vm = vm;
	pthread_mutex_init(&u->lock, NULL);
	timer_init(&u->rx_poll, uart_rx_poll, u);
	if (console_has_input(vm))
		timer_arm(vm, &u->rx_poll, clock_now_ns() + RX_POLL_NS);
	vm->devices[DEVICE_SLOT_UART] = u;
	return bus_register(vm, BUS_PIO, COM1_BASE, 8, &uart_ops, u, "uart16550");
}

static void uart_exit(struct vm *vm)
{
	struct uart *u = the_uart(vm);
	if (!u)
		return;
	timer_cancel(vm, &u->rx_poll);
	pthread_mutex_destroy(&u->lock);
	free(u);
	vm->devices[DEVICE_SLOT_UART] = NULL;
}

DEVICE_INIT("uart16550", DEVICE_ORDER_PLATFORM, uart_init, uart_exit)
