# emq — top-level Makefile. Each part lists its sources in its own files.mk
# (explicit object lists, beanstalkd style); this file holds the rules.
#
#   make            build everything into $(BUILD) (default: build/)
#   make check      unit tests + integration tests (real processes)
#   make sanitize   the same suite built with ASan + UBSan (in build-san/)
#   make memcheck   the unit tests and a short integration run under valgrind
#   make demo       start a router and a job manager, run a few hundred jobs
#   make bench      the benchmark suite (docs/performance.md), a few minutes
#   make install    PREFIX=/usr/local DESTDIR=
#   make deps       install missing Debian packages

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
VERSION  := 0.1.0

CC       ?= cc
PKGS     := libzmq libczmq libbsd-overlay sqlite3 inih jansson ck
# msgpack-c renamed its pkg-config module in 6.0: probe both names.
MSGPACK  := $(shell pkg-config --exists msgpack-c && echo msgpack-c || echo msgpack)
DEP_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(MSGPACK) 2>/dev/null)
DEP_LIBS   := $(shell pkg-config --libs $(PKGS) $(MSGPACK) 2>/dev/null)

# OPTFLAGS is what sanitize/memcheck change; CFLAGS from the command line
# (packagers) is kept and added to.
OPTFLAGS ?= -O2 -g
override CFLAGS += $(OPTFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC \
            -Icommon -Iinclude -I. $(DEP_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS  += $(EXTRA_LDFLAGS)
LDLIBS   += $(DEP_LIBS) -ldl -lm

include common/files.mk router/files.mk jobmanager/files.mk worker/files.mk \
        client/files.mk cli/files.mk plugins/files.mk tests/files.mk bench/files.mk \
        scheduler/files.mk

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_OBJ    := $(call obj,$(COMMON_SRC))
ROUTER_OBJ    := $(call obj,$(ROUTER_SRC))
JM_OBJ        := $(call obj,$(JOBMANAGER_SRC) $(WORKER_SRC))
CLIENT_OBJ    := $(call obj,$(CLIENT_SRC))
CLI_OBJ       := $(call obj,$(CLI_SRC))
BENCH_OBJ     := $(call obj,$(BENCH_SRC))
SCHED_OBJ     := $(call obj,$(SCHEDULER_SRC))

BINS := $(BUILD)/bin/emq-router $(BUILD)/bin/emq-jobmanager $(BUILD)/bin/emq-cli \
        $(BUILD)/bin/emq-scheduler
LIBEMQ := $(BUILD)/lib/libemq.so
PLUGINS := $(BUILD)/plugins/libemq_examples.so
TESTS := $(BUILD)/tests/selftest $(BUILD)/tests/integration $(BUILD)/tests/scheduler \
         $(BUILD)/tests/libslowsync.so

.PHONY: all check test sanitize memcheck demo install uninstall clean deps bench
all: $(BINS) $(LIBEMQ) $(PLUGINS) $(TESTS) $(BUILD)/lib/libemq.pc

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/bin/emq-router: $(ROUTER_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# -rdynamic: plugins see nothing of ours but libc/msgpack; kept off on purpose.
$(BUILD)/bin/emq-jobmanager: $(JM_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/emq-cli: $(CLI_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/emq-scheduler: $(SCHED_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SCHEDULER_LIBS)

$(BUILD)/bin/emq-bench: $(BENCH_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lpthread

$(LIBEMQ): $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libemq.so.0 -o $@ $^ $(LDLIBS)

$(BUILD)/plugins/%.so: $(BUILD)/obj/plugins/%.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(shell pkg-config --libs $(MSGPACK))

$(BUILD)/lib/libemq.pc: client/libemq.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@MSGPACK@|$(MSGPACK)|' $< > $@

$(BUILD)/tests/selftest: $(call obj,$(SELFTEST_SRC) $(CLIENT_TEST_SRC)) $(filter-out %/main.o,$(ROUTER_OBJ) $(JM_OBJ) $(SCHED_OBJ)) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SCHEDULER_LIBS)

# Built without the sanitizers' flags: it is preloaded into another program.
$(BUILD)/tests/libslowsync.so: $(SLOWSYNC_SRC)
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=c11 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

$(BUILD)/tests/integration: $(call obj,$(INTEGRATION_SRC)) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/scheduler: $(call obj,$(SCHEDULER_TEST_SRC)) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@scripts/install-deps.sh

check test: all
	BUILD=$(BUILD) tests/run

sanitize:
	$(MAKE) BUILD=build-san OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined" check

memcheck: all
	BUILD=$(BUILD) MEMCHECK=1 tests/run

demo: all
	BUILD=$(BUILD) scripts/demo.sh

# The benchmark suite (docs/performance.md); BENCH_ARGS e.g. --json bench.json.
bench: $(BINS) $(PLUGINS) $(BUILD)/bin/emq-bench
	$(BUILD)/bin/emq-bench $(BENCH_ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include/emq $(DESTDIR)$(PREFIX)/lib/emq/plugins \
	    $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(LIBEMQ) $(DESTDIR)$(PREFIX)/lib/libemq.so.0
	ln -sf libemq.so.0 $(DESTDIR)$(PREFIX)/lib/libemq.so
	install -m 644 $(BUILD)/lib/libemq.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 644 include/emq/*.h $(DESTDIR)$(PREFIX)/include/emq/
	install -m 755 $(PLUGINS) $(DESTDIR)$(PREFIX)/lib/emq/plugins/
	install -m 644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,emq-router emq-jobmanager emq-cli emq-scheduler)
	rm -f $(DESTDIR)$(PREFIX)/lib/libemq.so* $(DESTDIR)$(PREFIX)/lib/pkgconfig/libemq.pc
	rm -rf $(DESTDIR)$(PREFIX)/include/emq $(DESTDIR)$(PREFIX)/lib/emq

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
