# scheduler/: the emq-scheduler program (cron, schedules store, etcd, object, main).
SCHEDULER_SRC := scheduler/schedules.c scheduler/etcd.c \
                 scheduler/scheduler.c scheduler/main.c
SCHEDULER_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
