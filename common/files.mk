COMMON_SRC := common/emqp.c common/headers.c common/log.c common/config.c \
              common/clock.c common/errbuf.c common/numparse.c common/queuespec.c \
              common/program.c \
              common/payload.c common/json.c common/cron.c common/pidlock.c \
              common/curve.c common/procstat.c common/addrlist.c
# Daemons only (not libemq): sd_notify and SIGHUP, on libsystemd.
SERVICE_SRC := common/service.c
