# Thin wrapper over meson and ninja: `make check` and `make run` do all set-up.
#   make            install what is missing, configure, build
#   make run        ... and boot the demo guest under Vireo
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

.PHONY: all deps build check run clean fuzz

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

check: build
	@tests/check.sh $(BUILD) $(TESTS)

run: build
	$(BUILD)/tools/vireo run --kernel $(BUILD)/drivers/guest/demo.elf

fuzz:
	@scripts/install-deps.sh fuzz
	@[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true
	ninja -C build-fuzz
	@tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build build-san build-fuzz
