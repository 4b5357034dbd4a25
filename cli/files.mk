CLI_SRC := cli/main.c cli/submit.c cli/admin.c cli/result.c cli/demo.c cli/output.c cli/schedule.c \
           cli/keys.c cli/shell.c cli/jobs.c
# The shell's line editing and history: libedit (BSD licence).
CLI_LIBS := $(shell pkg-config --libs libedit 2>/dev/null || echo -ledit)
