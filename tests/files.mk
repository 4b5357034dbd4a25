SELFTEST_SRC := tests/selftest.c
INTEGRATION_SRC := tests/integration.c tests/durability.c tests/batching.c tests/durable_path.c \
                   tests/dropin.c tests/ops.c tests/confinement.c tests/python_jobs.c \
                   tests/observe.c tests/hostile.c tests/harness.c \
                   tests/store_contract.c tests/ha.c
# The store itself, driven in process by tests/store_contract.c.
INTEGRATION_STORE_SRC := router/store.c router/store_pg.c router/writer.c
# A slow disk for the durable path tests (LD_PRELOAD into emq-router).
SLOWSYNC_SRC := tests/slowsync.c
# The scheduler's integration tests (real emq-scheduler processes; etcd when installed).
SCHEDULER_TEST_SRC := tests/scheduler_test.c tests/harness.c
# Fuzz targets (tests/fuzz/fuzz_<name>.c, one per parser). make check replays
# each committed corpus (tests/fuzz/corpus/<name>/) through $(BUILD)/tests/fuzz-<name>
# (the target + tests/fuzz/replay.c); make fuzz builds them with libFuzzer.
FUZZ_TARGETS := emqp headers payload config queuespec cron schedule
# What a target needs beyond common/ (objects under $(BUILD)/obj/).
FUZZ_EXTRA_schedule := scheduler/schedules.o
FUZZ_REPLAY_SRC := tests/fuzz/replay.c
