# worker/: the code that runs inside a forked worker (no ZeroMQ). The
# embedded interpreter, worker/python_embed.c, is built alone into
# emq_python.so (Makefile).
WORKER_SRC := worker/wire.c worker/handoff.c worker/plugin.c worker/command.c worker/proctree.c \
              worker/cgroup.c worker/python.c worker/worker.c
