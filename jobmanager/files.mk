# jobmanager/: the emq-jobmanager program (eMQP side, worker pool, main).
JOBMANAGER_SRC := jobmanager/jobmanager.c jobmanager/pool.c jobmanager/main.c
