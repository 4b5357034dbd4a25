CLIENT_SRC := client/client.c client/ledger.c
# The self test runs in tests/selftest, not in libemq.
CLIENT_TEST_SRC := client/client_test.c
