CLI_SRC := cli/main.c cli/submit.c cli/admin.c cli/result.c cli/demo.c cli/output.c cli/schedule.c \
           cli/keys.c cli/events.c cli/top.c
