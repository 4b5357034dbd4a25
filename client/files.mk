CLIENT_SRC := client/client.c client/client_test.c
