ROUTER_SRC := router/router.c router/job.c router/dispatch.c router/outbox.c router/peers.c router/queues.c router/admin.c router/store.c router/store_pg.c router/writer.c router/main.c
