"""emq.jobs — EventMQ's client helpers under their EventMQ names, built on
emq.client (libemq underneath).

EventMQ 0.3.13 has two families, both kept here:
  - eventmq.client.jobs: the `job` decorator (f.delay(...)), schedule(func,
    broker_addr=...) and unschedule(func, broker_addr=...);
  - eventmq.client.messages: defer_job(socket, func, ...) and
    schedule(socket, func, ..., unschedule=False), where `socket` was an
    EventMQ Sender. Here it is an emq.Client, a router address, or None
    (then $EMQ_BROKER_ADDR, else the default frontend).
The payloads are EventMQ's JSON, byte for byte, so an EventMQ job manager
and emq's both run them. What emq adds is keyword arguments: delay, eta
(emq routers only), and the results: Client.wait / Client.result.
"""
import functools
import logging
import os

from .client import Client, build_payload, schedule_name

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "default"


def _client(socket):
    """(client, owned): the Client to use for socket."""
    if isinstance(socket, Client):
        return socket, False
    return Client(socket), True


def defer_job(socket, func, args=(), kwargs=None, class_args=(), class_kwargs=None,
              reply_requested=False, guarantee=False, retry_count=0, timeout=0,
              debounce_secs=False, queue=DEFAULT_QUEUE_NAME, delay=0, eta=0):
    """Submits func (a function, a bound method, or "pkg.module.name") to
    run on a job manager; returns the job's msgid. debounce_secs is
    accepted and, as in EventMQ, not sent."""
    del debounce_secs
    client, owned = _client(socket)
    try:
        return client.submit(func, args, kwargs, class_args, class_kwargs,
                             queue=queue, reply=reply_requested, retries=retry_count,
                             timeout=timeout, guarantee=guarantee, delay=delay, eta=eta)
    finally:
        if owned:
            client.close()


def _schedule_options(headers):
    """EventMQ's SCHEDULE headers -> (nohaste, runs, other headers)."""
    nohaste, runs, rest = False, 0, []
    for header in headers or ():
        if header == "nohaste":
            nohaste = True
        elif header.startswith("run_count:"):
            runs = int(header.split(":", 1)[1])
        else:
            rest.append(header)
    return nohaste, runs, ",".join(rest) or None


def schedule_message(socket, func, interval_secs=None, args=(), kwargs=None,
                     class_args=(), class_kwargs=None, headers=("guarantee",),
                     queue=DEFAULT_QUEUE_NAME, unschedule=False, cron=None, name=None):
    """eventmq.client.messages.schedule: runs func every interval_secs
    seconds or on a cron expression (an emq-scheduler must be connected),
    or with unschedule=True removes the schedule of that same job. Returns
    the schedule's name (emq: a hash of the job unless name is given)."""
    payload = build_payload(func, args, kwargs, class_args, class_kwargs)
    client, owned = _client(socket)
    try:
        if unschedule:
            target = name or schedule_name(payload)
            client.unschedule_name(target)
            return target
        nohaste, runs, rest = _schedule_options(headers)
        return client.schedule_payload(payload, interval_secs=interval_secs, cron=cron,
                                       queue=queue, name=name, nohaste=nohaste,
                                       runs=runs, headers=rest)
    finally:
        if owned:
            client.close()


def schedule(func, broker_addr=None, interval_secs=None, args=(), kwargs=None,
             class_args=(), class_kwargs=None, headers=("guarantee",),
             queue=DEFAULT_QUEUE_NAME, cron=None, name=None):
    """eventmq.client.jobs.schedule. Unlike EventMQ's, it honours queue."""
    return schedule_message(broker_addr, func, interval_secs=interval_secs,
                            args=args, kwargs=kwargs, class_args=class_args,
                            class_kwargs=class_kwargs, headers=headers, queue=queue,
                            cron=cron, name=name)


def unschedule(func, broker_addr=None, interval_secs=None, args=(), kwargs=None,
               class_args=(), class_kwargs=None, headers=("guarantee",),
               queue=DEFAULT_QUEUE_NAME, cron=None, name=None):
    """eventmq.client.jobs.unschedule: removes the schedule of this job
    (same func and arguments as when it was scheduled), or the one named.
    interval_secs, headers and cron are accepted as EventMQ's are and, as
    there, do not matter: a schedule is its job."""
    del interval_secs, headers, cron
    return schedule_message(broker_addr, func, args=args, kwargs=kwargs,
                            class_args=class_args, class_kwargs=class_kwargs,
                            queue=queue, unschedule=True, name=name)


class Job:
    """The decorator behind job(): f.delay(*args, **kwargs) submits f and
    returns the msgid, as EventMQ's does (no reply requested: fetch the
    outcome with Client.result). emq adds f.run(*args, **kwargs), which
    submits, waits and returns the value (JobError if it failed), and
    job options: retries, timeout, delay, eta, guarantee. async_=False
    (EventMQ's switch for tests; its older spelling `async` is taken too)
    runs f in this process instead; so, as in EventMQ, does a job with no
    broker_addr when $EMQ_BROKER_ADDR is not set (with a warning)."""

    def __init__(self, broker_addr=None, queue=None, async_=True, **options):
        self.broker_addr = broker_addr or os.environ.get("EMQ_BROKER_ADDR")
        self.queue = queue or DEFAULT_QUEUE_NAME
        self.async_ = options.pop("async", async_)
        self.options = options

    def _local(self, func):
        if self.async_ and not self.broker_addr:
            logger.warning("No EMQ_BROKER_ADDR defined. Running function `%s` "
                           "synchronously", func.__name__)
        return not (self.async_ and self.broker_addr)

    def __call__(self, func):
        @functools.wraps(func)
        def delay(*args, **kwargs):
            if self._local(func):
                return func(*args, **kwargs)
            with Client(self.broker_addr) as client:
                return client.submit(func, args, kwargs, queue=self.queue, reply=False,
                                     **self.options)

        @functools.wraps(func)
        def run(*args, **kwargs):
            if self._local(func):
                return func(*args, **kwargs)
            with Client(self.broker_addr) as client:
                msgid = client.submit(func, args, kwargs, queue=self.queue, reply=True,
                                      **self.options)
                return client.wait(msgid).get()

        func.delay = delay
        func.run = run
        return func


def job(block=None, broker_addr=None, queue=None, async_=True, **options):
    """@job, @job(queue="heavy"), or job(func, broker_addr=..., queue=...):
    gives func .delay() (and emq's .run())."""
    decorator = Job(broker_addr=broker_addr, queue=queue, async_=async_, **options)
    if callable(block):
        return decorator(block)
    return decorator
