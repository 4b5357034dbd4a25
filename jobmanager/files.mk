# jobmanager/: the emq-jobmanager program (eMQP side, workers, held jobs, settings,
# job record, process pool, main).
JOBMANAGER_SRC := jobmanager/job.c jobmanager/held.c jobmanager/settings.c \
                  jobmanager/workers.c jobmanager/jobmanager.c jobmanager/pool.c \
                  jobmanager/main.c
