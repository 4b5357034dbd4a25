# worker/: the code that runs inside a forked worker (no ZeroMQ).
WORKER_SRC := worker/wire.c worker/plugin.c worker/command.c worker/proctree.c \
              worker/cgroup.c worker/worker.c
