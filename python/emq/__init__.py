"""emq — submit Python jobs to emq (or EventMQ) and get their results.

    from emq import job, Client

    @job(queue="default")
    def add(a, b):
        return a + b

    msgid = add.delay(2, 3)        # EventMQ's call: returns the msgid
    add.run(2, 3)                  # emq: submit, wait, return 5
    with Client() as client:
        client.result(msgid, timeout=10).value   # 5

Built on libemq (ctypes); see docs/python.md.
"""
from .client import (Client, EmqError, JobError, NotFound, Result, build_payload,
                     job_path, schedule_name)
from .jobs import (DEFAULT_QUEUE_NAME, Job, defer_job, job, schedule, schedule_message,
                   unschedule)

__all__ = [
    "Client", "EmqError", "JobError", "NotFound", "Result", "build_payload", "job_path",
    "schedule_name", "DEFAULT_QUEUE_NAME", "Job", "defer_job", "job", "schedule",
    "schedule_message", "unschedule",
]
