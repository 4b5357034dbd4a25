JOBMANAGER_SRC := jobmanager/main.c
