PLUGIN_SRC := plugins/libemq_examples.c
