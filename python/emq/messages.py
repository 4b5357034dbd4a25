"""emq.messages — EventMQ's eventmq.client.messages names: defer_job and
schedule take a socket first (here an emq.Client, an address, or None).
See emq.jobs."""
from .jobs import defer_job
from .jobs import schedule_message as schedule

__all__ = ["defer_job", "schedule"]
