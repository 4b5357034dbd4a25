CLI_SRC := cli/main.c
