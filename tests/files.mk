SELFTEST_SRC := tests/selftest.c
INTEGRATION_SRC := tests/integration.c tests/durability.c tests/batching.c tests/harness.c
# The scheduler's integration tests (real emq-scheduler processes; etcd when installed).
SCHEDULER_TEST_SRC := tests/scheduler_test.c tests/harness.c
