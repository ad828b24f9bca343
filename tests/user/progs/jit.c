/* Self-modifying code the W^X way: write code, mprotect it executable, call
 * it, rewrite it in place, call it again; and a fresh mapping at the same
 * address after munmap. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static int (*emit(unsigned char *p, int value))(void)
{
	unsigned char code[] = {0xb8, 0, 0, 0, 0, 0xc3}; /* mov eax, imm32; ret */
	memcpy(code + 1, &value, 4);
	mprotect(p, 4096, PROT_READ | PROT_WRITE);
	memcpy(p, code, sizeof(code));
	mprotect(p, 4096, PROT_READ | PROT_EXEC);
	return (int (*)(void))p;
}

int main(void)
{
	unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int sum = 0;
	for (int i = 1; i <= 100; i++)
		sum += emit(p, i)();
	printf("rewritten 100 times: %d\n", sum);
	munmap(p, 4096);
	p = mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("remapped: %d\n", emit(p, 4242)());
	return 0;
}
