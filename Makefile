# wsac - audio captioning as Unix filters.   make | make check | make install
#
# Reference numerics: no -ffast-math/-Ofast, ever (IEEE semantics, NaN checks).

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DESTDIR ?=

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter
# msgpack-c renamed its pkg-config package in 6.x (msgpack -> msgpack-c)
MSGPACK := $(shell pkg-config --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)
PKGS    := sndfile fftw3f openblas $(MSGPACK) soxr libutf8proc jansson
# MPI build: make MPI=1 (Open MPI, installed by scripts/install-mpi.sh): clap-train
# then splits its batches over the ranks of mpirun; the other tools are the same
ifeq ($(MPI),1)
  PKGS += ompi-c
  CFLAGS += -DWSAC_MPI
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS  = $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Ilib -D_DEFAULT_SOURCE
# --as-needed: a tool links only the libraries it uses (wav2mel does not
# start OpenBLAS's thread pool)
LDFLAGS    += -Wl,--as-needed
# libcsv ships no pkg-config file
LDLIBS      = $(PKG_LIBS) -lcsv -lm -lpthread

# Sanitizer build: make SAN=1 (objects and binaries go to build-san/, bin-san/)
ifeq ($(SAN),1)
  CFLAGS += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  B := build-san
  BIN := bin-san
else ifeq ($(MPI),1)
  B := build-mpi
  BIN := bin-mpi
else
  B := build
  BIN := bin
endif

LIB_SRC   := $(wildcard lib/*.c)
LIB_OBJ   := $(LIB_SRC:lib/%.c=$(B)/lib/%.o)
TOOLS     := $(notdir $(basename $(wildcard filters/*.c)))
TOOL_BINS := $(TOOLS:%=$(BIN)/%)
TEST_SRC  := $(wildcard tests/c/*.c)
TEST_BINS := $(TEST_SRC:tests/c/%.c=$(B)/tests/%)
MAN1      := $(wildcard man/man1/*.1)
MAN5      := $(wildcard man/man5/*.5)

.PHONY: all check check-kernels check-full check-mpi check-san fuzz fuzz-short demo install uninstall clean bench deps
all: deps $(TOOL_BINS) $(TEST_BINS)

deps:
	@pkg-config --exists $(PKGS) || { echo "missing libraries: run 'sh scripts/install-deps.sh' first" >&2; \
	  for p in $(PKGS); do pkg-config --exists $$p || echo "  pkg-config cannot find $$p" >&2; done; exit 1; }

$(B)/lib/%.o: lib/%.c $(wildcard lib/*.h) | $(B)/lib
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/filters/%.o: filters/%.c $(wildcard lib/*.h) | $(B)/filters
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/libwsac.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BIN)/%: $(B)/filters/%.o $(B)/libwsac.a | $(BIN)
	$(CC) $(LDFLAGS) $< $(B)/libwsac.a $(LDLIBS) -o $@

$(B)/tests/%: tests/c/%.c $(B)/libwsac.a $(wildcard lib/*.h) tests/c/check.h | $(B)/tests
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $< $(B)/libwsac.a $(LDLIBS) -o $@

$(B)/lib $(B)/filters $(B)/tests $(BIN):
	mkdir -p $@

# The whole test suite; ends with "N passed, N failed".
check: all
	@sh tests/run.sh

# The whole suite again on an ASan + UBSan (+ LeakSanitizer) build: any report fails.
check-san:
	@$(MAKE) -s SAN=1 all
	@WSAC_SAN=1 WSAC_BIN=$(CURDIR)/bin-san WSAC_BUILD=$(CURDIR)/build-san sh tests/run.sh

# The MPI build of clap-train (make MPI=1: build-mpi/, bin-mpi/) under mpirun with
# 1-4 local ranks (tests/py/test_mpi.py); without Open MPI (sh scripts/install-mpi.sh)
# it says so and passes.
check-mpi: all
	@if pkg-config --exists ompi-c && command -v mpirun >/dev/null 2>&1; then \
	  $(MAKE) -s MPI=1 all && WSAC_MPI_BIN=$(CURDIR)/bin-mpi WSAC_MPI_BUILD=$(CURDIR)/build-mpi sh tests/run.sh test_mpi; \
	else echo "check-mpi: Open MPI is not installed (sh scripts/install-mpi.sh): skipped"; fi

# libFuzzer harnesses (tests/fuzz/, clang-14 + ASan/UBSan) into build-fuzz/.
fuzz:
	@sh tests/fuzz/build.sh

# Every harness briefly (8 s each, about a minute), as CI does; longer runs:
# sh tests/fuzz/run.sh SECONDS [NAME...] (see tests/fuzz/README.md).
fuzz-short:
	@sh tests/fuzz/run.sh 8

# The tests that compare thread counts, once per OpenBLAS kernel family
# (OPENBLAS_CORETYPE=Haswell, Sandybridge, unset).
check-kernels: all
	@sh tests/kernels.sh

# Tests on full-size (random-weight) models: minutes, not seconds.
check-full: all
	@sh tests/run.sh --full

# The main job on bundled input.
demo: all
	@sh pipelines/demo

bench: all
	@sh bench/run.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 755 $(TOOL_BINS) $(DESTDIR)$(BINDIR)/
	install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/

uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(notdir $(MAN1):%=$(DESTDIR)$(MANDIR)/man1/%)

clean:
	rm -rf build build-san bin bin-san build-mpi bin-mpi build-fuzz

# The sound world (scripts/world.py, docs/world.md): scenes and Clotho-format CSVs from recordings in
# Debian packages (sh scripts/install-world.sh first) into world/; world-small (procedural sounds,
# sound-theme-freedesktop, espeak-ng; a few hundred scenes) into world-small/. WORLD_SEED=S, WORLD_J=N.
WORLD_SEED ?= 1
WORLD_J ?= $(shell nproc 2>/dev/null || echo 2)
.PHONY: world world-small
world:
	/usr/bin/python3 scripts/world.py --seed $(WORLD_SEED) -j $(WORLD_J) -o world
world-small:
	/usr/bin/python3 scripts/world.py --small --seed $(WORLD_SEED) -j $(WORLD_J) -o world-small

# Both papers' experiments in the sound world (pipelines/world-experiment, docs/world-results.md): builds
# the world into world-exp/world (or WORLD_EXP_ARGS="--world world" to reuse one), trains the CLAPs and
# decoders, evaluates, and rewrites docs/world-results.md. WORLD_EXP_ARGS: more options (--small, --seeds ...).
.PHONY: world-experiment
world-experiment: all
	nice pipelines/world-experiment -j $(WORLD_J) --world-seed $(WORLD_SEED) --doc docs/world-results.md $(WORLD_EXP_ARGS)
