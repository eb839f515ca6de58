# hvp top-level Makefile: the README's two commands, wrapping meson + ninja.
#   make run   - set-up, build, and the main job
#   make guest - the default guest (kernel + initramfs from Debian's packages)
#   make test  - set-up, build (plain and ASan+UBSan), every suite, one summary line
BUILD ?= build
ASAN  ?= build-asan
MESON_OPTS ?= --buildtype=debugoptimized -Dwerror=true

.PHONY: all build asan deps test-deps guest run test test-kvm bench clean

all: build

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

$(ASAN)/build.ninja:
	meson setup $(ASAN) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

asan: test-deps $(ASAN)/build.ninja
	ninja -C $(ASAN)

# The default guest (Debian's kernel + busybox, in a cache outside the tree;
# see scripts/guest.sh): quick when cached.
guest:
	@scripts/deps.sh run
	@scripts/guest.sh >/dev/null

run: deps guest $(BUILD)/build.ninja
	ninja -C $(BUILD)
	@scripts/run.sh $(BUILD)

test: test-deps $(BUILD)/build.ninja $(ASAN)/build.ninja
	-@scripts/guest.sh >/dev/null
	ninja -C $(BUILD)
	ninja -C $(ASAN)
	@scripts/run-tests.sh $(BUILD) $(ASAN)

# The kvm backend for real on a machine without /dev/kvm: the conformance
# suite, and `hvp run --backend kvm` booting the default guest, inside a
# Debian guest that QEMU (TCG, -cpu EPYC) gives nested SVM. The default guest
# is refreshed first (no guest: that test SKIPs).
test-kvm: test-deps $(BUILD)/build.ninja
	ninja -C $(BUILD)
	-@scripts/guest.sh >/dev/null
	meson test -C $(BUILD) --print-errorlogs platform-nested-kvm vmm-nested-boot

bench: test-deps $(BUILD)/build.ninja
	ninja -C $(BUILD)
	@scripts/run-bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN)
