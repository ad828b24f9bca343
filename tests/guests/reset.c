/*
 * Machine reset: the first boot leaves a mark in RAM outside the image and
 * resets through the PCI reset control register (0xcf9); the machine reboots
 * the same image, which finds the mark (RAM survives a reset, as on a PC),
 * counts the boot, and the second time resets through the keyboard
 * controller instead. The third boot passes. Runs without -no-reboot.
 */
#include "guest.h"

#define MARK_ADDR (64ull << 20) /* well above the image, inside 128 MiB */
#define MARK_MAGIC 0x5245534554212121ull

struct mark {
	uint64_t magic, boots;
};

void main(void)
{
	volatile struct mark *m = (volatile struct mark *)MARK_ADDR;

	if (m->magic != MARK_MAGIC) {
		m->magic = MARK_MAGIC;
		m->boots = 1;
		printf("INFO first boot: resetting through port 0xcf9\n");
		outb(0xcf9, 0x02); /* select a hard reset, then pulse it */
		outb(0xcf9, 0x06);
	} else if (m->boots == 1) {
		m->boots = 2;
		printf("INFO second boot: resetting through the keyboard controller\n");
		outb(0x64, 0xfe);
	} else {
		check_eq("boots before this one", 2, m->boots);
		m->magic = 0;
		return;
	}
	for (int i = 0; i < 1000; i++) /* the reset takes effect at once */
		pit_wait_ticks(PIT_HZ / 1000);
	check(false, "reset", "still running 1 s after asking for a reset (boot %lu)", (uint64_t)m->boots);
}
