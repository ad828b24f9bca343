# Thin wrapper over meson and ninja: `make check` and `make run` do all set-up.
#   make            install what is missing, configure, build
#   make run        ... and boot a Debian Linux guest to a shell on the serial
#                   console (tools/mkguest builds it; the first run downloads
#                   the packages); with stdin not a terminal, a short demo
#   make run-demo   ... and boot the bare-metal demo guest instead
#   make check      ... and run every test; ends with "N passed, N failed"
#   make SANITIZE=1 check   the same with AddressSanitizer + UBSan (build-san/)
#   make TESTS=qemu/arith check   run only the tests whose names match
#   make fuzz       the libFuzzer targets (clang, build-fuzz/), each run for
#                   FUZZ_SECONDS (default 30); ends with one line per target

ifeq ($(SANITIZE),1)
BUILD ?= build-san
MESON_OPTS += -Dsanitize=true
else
BUILD ?= build
endif

FUZZ_SECONDS ?= 30

.PHONY: all deps build check run run-demo clean fuzz

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

check: build
	@tests/check.sh $(BUILD) $(TESTS)

# The Linux guest: GUEST=cloud or generic (Debian's kernel flavours).
GUEST ?= cloud
ENGINE ?= dbt
CPUS ?= 2
run: build
	@tools/mkguest --out $(BUILD)/guest --flavour $(GUEST) >/dev/null
	@if [ -t 0 ]; then what=; else what=vireo.script=/vireo/demo.sh; fi; \
	set -x; $(BUILD)/tools/vireo run --engine $(ENGINE) --cpus $(CPUS) --memory 512M \
		--kernel $(BUILD)/guest/$(GUEST)/vmlinuz --initrd $(BUILD)/guest/$(GUEST)/initrd.img \
		--cmdline "console=ttyS0 $$what"

run-demo: build
	$(BUILD)/tools/vireo run --kernel $(BUILD)/drivers/guest/demo.elf

fuzz:
	@scripts/install-deps.sh fuzz
	@[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true
	ninja -C build-fuzz
	@tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build build-san build-fuzz
