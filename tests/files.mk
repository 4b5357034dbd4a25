SELFTEST_SRC := tests/selftest.c
INTEGRATION_SRC := tests/integration.c tests/durability.c tests/batching.c tests/durable_path.c \
                   tests/dropin.c tests/ops.c tests/confinement.c tests/python_jobs.c \
                   tests/observe.c tests/harness.c \
                   tests/store_contract.c
# The store itself, driven in process by tests/store_contract.c.
INTEGRATION_STORE_SRC := router/store.c router/store_pg.c router/writer.c
# A slow disk for the durable path tests (LD_PRELOAD into emq-router).
SLOWSYNC_SRC := tests/slowsync.c
# The scheduler's integration tests (real emq-scheduler processes; etcd when installed).
SCHEDULER_TEST_SRC := tests/scheduler_test.c tests/harness.c
