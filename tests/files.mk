SELFTEST_SRC := tests/selftest.c
INTEGRATION_SRC := tests/integration.c tests/durability.c tests/harness.c
