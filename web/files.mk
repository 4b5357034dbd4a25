# emq-web: the dashboard and /metrics (libmicrohttpd); web/static is served as is.
WEB_SRC := web/main.c web/server.c web/sampler.c web/prom.c
WEB_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd) -lpthread
