PUBSUB_SRC := pubsub/pubsub.c pubsub/main.c
