# emq — top-level Makefile. Each part lists its sources in its own files.mk
# (explicit object lists, beanstalkd style); this file holds the rules.
#
#   make            build everything into $(BUILD) (default: build/)
#   make check      unit tests + integration tests (real processes)
#   make sanitize   the same suite built with ASan + UBSan (in build-san/)
#   make memcheck   the unit tests and a short integration run under valgrind
#   make demo       start a router and a job manager, run a few hundred jobs
#   make bench      the benchmark suite (docs/performance.md), a few minutes
#   make fuzz       each fuzz target under libFuzzer (clang) for FUZZ_SECONDS,
#                   adding what it finds to tests/fuzz/corpus/ (docs/fuzzing.md)
#   make install    PREFIX=/usr/local DESTDIR=
#   make deps       install missing Debian packages

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
# Where make install puts each kind of file; every one is under DESTDIR.
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR   ?= $(PREFIX)/share/man
PLUGINDIR ?= $(LIBDIR)/emq/plugins
# /usr's configuration lives in /etc; any other prefix keeps its own etc/.
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR  ?= $(LIBDIR)/systemd/system
WEBDIR   ?= $(PREFIX)/share/emq/web
SONAME   := libemq.so.0
# The one place the version is written: programs and libemq get it from the
# generated include/emq/version.h (EMQ_VERSION; not in git, so that a build
# tree still compiles clients with -Iinclude), the man pages and libemq.pc
# from @VERSION@.
VERSION  := 0.1.0

CC       ?= cc
PKGS     := libzmq libczmq libbsd-overlay sqlite3 inih jansson ck libpq
# msgpack-c renamed its pkg-config module in 6.0: probe both names.
MSGPACK  := $(shell pkg-config --exists msgpack-c && echo msgpack-c || echo msgpack)
DEP_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(MSGPACK) 2>/dev/null)
DEP_LIBS   := $(shell pkg-config --libs $(PKGS) $(MSGPACK) 2>/dev/null)

# Python jobs: the embedded interpreter is a plugin of its own
# (emq_python.so), linked with Debian's libpython; PYTHON3 names the python
# whose -dev files it is built against (not whatever python3 is on PATH).
PYTHON3   ?= /usr/bin/python3
PY_CFLAGS := $(shell $(PYTHON3)-config --includes 2>/dev/null)
PY_LIBS   := $(shell $(PYTHON3)-config --embed --ldflags 2>/dev/null)
PY_SONAME := $(shell $(PYTHON3) -c 'import sysconfig; print(sysconfig.get_config_var("INSTSONAME"))' 2>/dev/null)
PY_HOME   := $(shell $(PYTHON3) -c 'import sys; print(sys.base_prefix)' 2>/dev/null)

# OPTFLAGS is what sanitize/memcheck change; CFLAGS from the command line
# (packagers) is kept and added to.
OPTFLAGS ?= -O2 -g
override CFLAGS += $(OPTFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC \
            -Icommon -Iinclude -I. $(DEP_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS  += $(EXTRA_LDFLAGS)
LDLIBS   += $(DEP_LIBS) -ldl -lm

include common/files.mk router/files.mk jobmanager/files.mk worker/files.mk \
        client/files.mk cli/files.mk plugins/files.mk tests/files.mk bench/files.mk \
        scheduler/files.mk pubsub/files.mk web/files.mk

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_OBJ    := $(call obj,$(COMMON_SRC))
SERVICE_OBJ   := $(call obj,$(SERVICE_SRC))
# libsystemd for the daemons' sd_notify only: libemq does not depend on it.
SYSTEMD_LIBS  := $(shell pkg-config --libs libsystemd 2>/dev/null || echo -lsystemd)
ROUTER_OBJ    := $(call obj,$(ROUTER_SRC))
JM_OBJ        := $(call obj,$(JOBMANAGER_SRC) $(WORKER_SRC))
CLIENT_OBJ    := $(call obj,$(CLIENT_SRC))
CLI_OBJ       := $(call obj,$(CLI_SRC))
BENCH_OBJ     := $(call obj,$(BENCH_SRC))
SCHED_OBJ     := $(call obj,$(SCHEDULER_SRC))
PUBSUB_OBJ    := $(call obj,$(PUBSUB_SRC))
WEB_OBJ       := $(call obj,$(WEB_SRC))

# The installed paths compiled in (the job manager's default plugin
# directory), rewritten only when they change so that a new PREFIX rebuilds
# what uses them and nothing else.
PATHS_H := $(BUILD)/include/emq-paths.h
BINS := $(BUILD)/bin/emq-router $(BUILD)/bin/emq-jobmanager $(BUILD)/bin/emq-cli \
        $(BUILD)/bin/emq-scheduler $(BUILD)/bin/emq-pubsub $(BUILD)/bin/emq-web
VERSION_H := include/emq/version.h
MANPAGES := $(patsubst docs/man/%,$(BUILD)/man/%,$(wildcard docs/man/*.1))
LIBEMQ_REAL := $(BUILD)/lib/libemq.so.$(VERSION)
LIBEMQ := $(BUILD)/lib/libemq.so
UNITS := $(patsubst systemd/%.in,$(BUILD)/systemd/%,$(wildcard systemd/*.service.in))
SAMPLE_CONF := $(BUILD)/etc/emq.conf.sample
PLUGINS := $(BUILD)/plugins/libemq_examples.so
PYTHON_PLUGIN := $(BUILD)/lib/emq/emq_python.so
TESTS := $(BUILD)/tests/selftest $(BUILD)/tests/integration $(BUILD)/tests/scheduler \
         $(BUILD)/tests/libslowsync.so $(patsubst %,$(BUILD)/tests/fuzz-%,$(FUZZ_TARGETS))

.PHONY: FORCE all check test sanitize memcheck demo install uninstall clean deps bench format \
        format-check fuzz fuzz-build fuzz-run fuzz-merge
all: $(BINS) $(LIBEMQ) $(PLUGINS) $(PYTHON_PLUGIN) $(TESTS) $(BUILD)/lib/libemq.pc $(MANPAGES) $(UNITS) \
     $(SAMPLE_CONF)

# Order-only: the first build needs the header before any object; later
# ones follow the .d files (a new VERSION rewrites it).
$(BUILD)/obj/%.o: %.c | $(VERSION_H) $(PATHS_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(BUILD)/include -MMD -MP -c $< -o $@

$(PATHS_H): FORCE
	@mkdir -p $(dir $@)
	@printf '%s\n' '/* Generated by the Makefile from PREFIX; do not edit. */' \
	    '#define EMQ_PREFIX "$(PREFIX)"' '#define EMQ_PLUGIN_DIR "$(PLUGINDIR)"' '#define EMQ_LIBDIR "$(LIBDIR)"' '#define EMQ_SYSCONFDIR "$(SYSCONFDIR)"' \
	    '#define EMQ_WEB_DIR "$(WEBDIR)"' \
	    > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

# Units and the sample configuration name the installed paths.
$(BUILD)/systemd/%: systemd/%.in $(PATHS_H)
	@mkdir -p $(dir $@)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@

$(SAMPLE_CONF): docs/emq.conf.sample.in $(PATHS_H)
	@mkdir -p $(dir $@)
	sed -e 's|@PLUGINDIR@|$(PLUGINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@

FORCE:

$(VERSION_H): Makefile
	@mkdir -p $(dir $@)
	printf '%s\n' '/* Generated by the Makefile from its VERSION; do not edit. */' \
	    '#ifndef EMQ_VERSION_H' '#define EMQ_VERSION_H' '#define EMQ_VERSION "$(VERSION)"' \
	    '#endif' > $@

$(BUILD)/man/%.1: docs/man/%.1 Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@VERSION@|$(VERSION)|' $< > $@

$(BUILD)/bin/emq-router: $(ROUTER_OBJ) $(SERVICE_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SYSTEMD_LIBS)

# -rdynamic: plugins see nothing of ours but libc/msgpack; kept off on purpose.
$(BUILD)/bin/emq-jobmanager: $(JM_OBJ) $(SERVICE_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SYSTEMD_LIBS)

$(BUILD)/bin/emq-cli: $(CLI_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CLI_LIBS)

$(BUILD)/bin/emq-scheduler: $(SCHED_OBJ) $(SERVICE_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SCHEDULER_LIBS) $(SYSTEMD_LIBS)

$(BUILD)/bin/emq-pubsub: $(PUBSUB_OBJ) $(SERVICE_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SYSTEMD_LIBS)

# emq-web serves web/static, installed in WEBDIR (EMQ_WEB_DIR).
WEB_FILES := $(wildcard web/static/*)
$(BUILD)/bin/emq-web: $(WEB_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(WEB_LIBS)

$(BUILD)/bin/emq-bench: $(BENCH_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lpthread

# Only emq_* is exported (client/libemq.map): the common/ code inside is
# hidden, so it cannot collide with a program's own log_info or config_new.
# The build tree has the links an installed libemq has, so programs linked
# with -Lbuild/lib -lemq run from it (LD_LIBRARY_PATH=build/lib).
$(LIBEMQ_REAL): $(CLIENT_OBJ) $(COMMON_OBJ) client/libemq.map
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script,client/libemq.map \
	    -o $@ $(CLIENT_OBJ) $(COMMON_OBJ) $(LDLIBS)

$(LIBEMQ): $(LIBEMQ_REAL)
	ln -sf libemq.so.$(VERSION) $(BUILD)/lib/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/obj/worker/python_embed.o: worker/python_embed.c | $(VERSION_H) $(PATHS_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(BUILD)/include $(PY_CFLAGS) -DEMQ_PYTHON_SONAME='"$(PY_SONAME)"' \
	    -DEMQ_PYTHON_HOME='"$(PY_HOME)"' -MMD -MP -c $< -o $@

$(PYTHON_PLUGIN): $(BUILD)/obj/worker/python_embed.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(PY_LIBS)

$(BUILD)/plugins/%.so: $(BUILD)/obj/plugins/%.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(shell pkg-config --libs $(MSGPACK))

$(BUILD)/lib/libemq.pc: client/libemq.pc.in $(PATHS_H)
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@MSGPACK@|$(MSGPACK)|' $< > $@

$(BUILD)/tests/selftest: $(call obj,$(SELFTEST_SRC) $(CLIENT_TEST_SRC)) $(filter-out %/main.o,$(ROUTER_OBJ) $(JM_OBJ) $(SCHED_OBJ) $(PUBSUB_OBJ) $(WEB_OBJ)) $(SERVICE_OBJ) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SCHEDULER_LIBS) $(SYSTEMD_LIBS) $(WEB_LIBS)

# Built without the sanitizers' flags: it is preloaded into another program.
$(BUILD)/tests/libslowsync.so: $(SLOWSYNC_SRC)
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=c11 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

$(BUILD)/tests/integration: $(call obj,$(INTEGRATION_SRC) $(INTEGRATION_STORE_SRC)) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/scheduler: $(call obj,$(SCHEDULER_TEST_SRC)) $(CLIENT_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A fuzz target with the replay main: what make check runs over its corpus.
$(BUILD)/tests/fuzz-%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(call obj,$(FUZZ_REPLAY_SRC)) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Pattern-built objects are kept, so a second make has nothing to relink.
.SECONDARY: $(patsubst %,$(BUILD)/obj/tests/fuzz/fuzz_%.o,$(FUZZ_TARGETS)) $(call obj,$(FUZZ_REPLAY_SRC))

# Targets that need more than common/ (tests/files.mk: FUZZ_EXTRA_<name>).
$(foreach t,$(FUZZ_TARGETS),$(eval $(BUILD)/tests/fuzz-$(t) $(BUILD)/fuzz/fuzz-$(t): \
    $(addprefix $(BUILD)/obj/,$(FUZZ_EXTRA_$(t)))))

# The same target linked with libFuzzer's main (make fuzz-build, clang only).
$(BUILD)/fuzz/fuzz-%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# Fuzzing (docs/fuzzing.md): FUZZ_SECONDS per target, FUZZ_TARGETS to pick.
# New inputs go straight into the committed corpus; crashes into
# build-fuzz/crashes/. fuzz-merge minimises each corpus (-merge=1) and
# keeps the inputs named crash-* (each once broke a parser).
FUZZ_SECONDS ?= 30
FUZZ_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_MAKE    := $(MAKE) BUILD=build-fuzz CC=clang OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
                EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_FLAGS)" \
                EXTRA_LDFLAGS="$(FUZZ_FLAGS)"
fuzz: fuzz-build
	+$(FUZZ_MAKE) fuzz-run

fuzz-build:
	+$(FUZZ_MAKE) $(patsubst %,build-fuzz/fuzz/fuzz-%,$(FUZZ_TARGETS))

fuzz-run:
	@mkdir -p $(BUILD)/crashes
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p tests/fuzz/corpus/$$t; \
	    dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	    echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	    $(BUILD)/fuzz/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -rss_limit_mb=1024 -max_len=8192 -print_final_stats=1 $$dict \
	        -artifact_prefix=$(BUILD)/crashes/$$t- tests/fuzz/corpus/$$t; \
	done

fuzz-merge: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    rm -rf build-fuzz/merged/$$t; mkdir -p build-fuzz/merged/$$t; \
	    build-fuzz/fuzz/fuzz-$$t -merge=1 -timeout=10 -rss_limit_mb=1024 \
	        build-fuzz/merged/$$t tests/fuzz/corpus/$$t; \
	    cp tests/fuzz/corpus/$$t/crash-* build-fuzz/merged/$$t/ 2>/dev/null || true; \
	    rm -rf tests/fuzz/corpus/$$t; cp -r build-fuzz/merged/$$t tests/fuzz/corpus/$$t; \
	done

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

# The house layout (.clang-format): `make format` applies it, `make
# format-check` lists the files that drifted from it.
FORMAT_SRC = $(filter-out $(VERSION_H),$(shell git ls-files '*.c' '*.h' 2>/dev/null))
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(INCLUDEDIR)/emq $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/emq
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 755 $(LIBEMQ_REAL) $(DESTDIR)$(LIBDIR)/
	ln -sf libemq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libemq.so
	install -m 644 $(BUILD)/lib/libemq.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 644 include/emq/*.h $(DESTDIR)$(INCLUDEDIR)/emq/
	install -m 755 $(PLUGINS) $(DESTDIR)$(PLUGINDIR)/
	install -d $(DESTDIR)$(LIBDIR)/emq
	install -m 755 $(PYTHON_PLUGIN) $(DESTDIR)$(LIBDIR)/emq/
	install -m 644 $(MANPAGES) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	install -m 644 $(SAMPLE_CONF) $(DESTDIR)$(SYSCONFDIR)/emq/
	install -d $(DESTDIR)$(WEBDIR)
	install -m 644 $(WEB_FILES) $(DESTDIR)$(WEBDIR)/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,emq-router emq-jobmanager emq-cli emq-scheduler emq-pubsub emq-web)
	rm -f $(DESTDIR)$(LIBDIR)/libemq.so* $(DESTDIR)$(LIBDIR)/pkgconfig/libemq.pc
	rm -rf $(DESTDIR)$(INCLUDEDIR)/emq $(DESTDIR)$(LIBDIR)/emq
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MANPAGES)))
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	rm -f $(DESTDIR)$(SYSCONFDIR)/emq/emq.conf.sample
	rm -rf $(DESTDIR)$(WEBDIR)

clean:
	rm -rf build build-san build-fuzz $(VERSION_H)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
