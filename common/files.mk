COMMON_SRC := common/emqp.c common/headers.c common/log.c common/config.c \
              common/payload.c common/json.c common/cron.c common/pidlock.c \
              common/curve.c
