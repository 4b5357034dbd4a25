CLIENT_SRC := client/client.c
