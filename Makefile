# SPDX-License-Identifier: BSD-3-Clause
# The two commands of the README. Everything real lives in meson; this file sets up and drives it.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
MESON_OPTS ?= -Dwerror=true -Dsystemd=enabled

.PHONY: all demo check deps deps-test build build-asan test test-asan test-guest fuzz fuzz-check clean \
	install

all: build

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debug

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

# make install [PREFIX=/usr/local] [DESTDIR=/staging]: vhud, vhuctl, libvhu.so.0, the headers,
# libvhu.pc and the man pages under PREFIX (the build's prefix is set to it), DESTDIR prepended.
PREFIX ?= /usr/local
install: $(BUILD)/build.ninja
	meson configure $(BUILD) -Dprefix=$(PREFIX)
	ninja -C $(BUILD)
	meson install -C $(BUILD) --no-rebuild $(if $(DESTDIR),--destdir $(DESTDIR))
	@# meson 1.0 leaves the dynamic linker's cache alone: libvhu.so.0 for programs linking it
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

build-asan: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

demo: deps build
	@scripts/demo.sh $(BUILD)

# Unit, loopback and bad-input suites, then the same under ASan+UBSan, then the real guest.
test: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 --no-suite guest --no-suite interop

test-guest: build
	meson test -C $(BUILD) --print-errorlogs --suite guest --num-processes 1

# libFuzzer targets (tests/fuzz, clang, ASan+UBSan; docs/security.md): 20 s each in check, or
# FUZZ_SECONDS each (default 600). Without clang: a loud SKIP.
fuzz-check:
	FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh 20

fuzz:
	FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(FUZZ_SECONDS)

# deps-test, build + build-asan, the meson suites but guest, test-asan, fuzz-check, test-guest;
# the first failure stops it. scripts/check.sh prints one verdict line at the end.
check:
	@BUILD=$(BUILD) ASAN_BUILD=$(ASAN_BUILD) scripts/check.sh $(MAKE)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
