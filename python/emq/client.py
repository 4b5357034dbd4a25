"""emq.client — submit Python jobs to an emq (or EventMQ) router through
libemq, wait for their results, and administer the router.

A Client is one connection (one libemq client, one DEALER socket). Like
libemq's, it is not thread-safe: use one per thread.
"""
import ctypes
import json
import os

import msgpack

from . import _libemq as c

DEFAULT_TIMEOUT_MS = 5000


class EmqError(Exception):
    """A call to the router failed (unreachable, refused, bad argument)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class NotFound(EmqError):
    """The router holds no such job (never submitted, or its result expired)."""


class JobError(Exception):
    """A job ended without a value: .status says how ("failed", "timeout",
    "crashed", "rejected", "cancelled"), .error is its error text (for a
    Python job that raised, the traceback)."""

    def __init__(self, result):
        super().__init__("job %s %s: %s" % (result.msgid, result.status, result.error))
        self.result = result
        self.status = result.status
        self.error = result.error


class Result:
    """A job's outcome. status is "ok" or how it failed; value is the job's
    return value when ok (for a Python job, the "value" of EventMQ's reply
    JSON); error the error text otherwise; usage the resource use
    ("wall_us=N cpu_us=N maxrss_kb=N")."""

    def __init__(self, msgid, status, data, usage):
        self.msgid = msgid
        self.status = status
        self.usage = usage
        self.value = None
        self.error = None
        if status == "ok":
            self.value = _decode_value(data)
        else:
            self.error = data.decode("utf-8", "replace")

    @property
    def ok(self):
        return self.status == "ok"

    def get(self):
        """The value, or JobError when the job did not succeed."""
        if not self.ok:
            raise JobError(self)
        return self.value

    def __repr__(self):
        shown = self.value if self.ok else self.error
        return "Result(%s, %s, %r)" % (self.msgid, self.status, shown)


def _decode_value(data):
    """A result value is msgpack. A Python job's value is a msgpack str
    holding EventMQ's reply JSON {"value": ...}: unwrapped here."""
    value = msgpack.unpackb(data, raw=False) if data else None
    if isinstance(value, str) and value.startswith('{"value": '):
        try:
            reply = json.loads(value)
        except ValueError:
            return value
        if isinstance(reply, dict) and list(reply) == ["value"]:
            return reply["value"]
    return value


def job_path(func):
    """EventMQ's (path, callable, class_args) for a job: a function gives
    ("pkg.module", "name"); a bound method of an instance gives
    ("pkg.module:Class", "method") with the instance's class_args if it
    has them; a string "pkg.module.name" or "pkg.module:Class.name" is
    split as written."""
    if isinstance(func, str):
        if ":" in func:
            module, _, rest = func.partition(":")
            cls, _, name = rest.rpartition(".")
            return "%s:%s" % (module, cls), name
        module, _, name = func.rpartition(".")
        return module, name
    owner = getattr(func, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        cls = type(owner)
        return "%s:%s" % (cls.__module__, cls.__name__), func.__name__
    return func.__module__, func.__name__


def build_payload(func, args=(), kwargs=None, class_args=(), class_kwargs=None):
    """EventMQ's JSON payload for a job, byte for byte as its client writes
    it (key order, separators, ASCII escapes)."""
    path, callable_ = job_path(func)
    body = {
        "callable": callable_,
        "path": path,
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "class_args": list(class_args),
        "class_kwargs": dict(class_kwargs or {}),
    }
    return json.dumps(["run", body]).encode("ascii")


def schedule_name(payload):
    """The name emq-scheduler gives a schedule sent without one: FNV-1a of
    its payload, as EventMQ names a schedule by its job."""
    value = 1469598103934665603
    for byte in payload:
        value ^= byte
        value = (value * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "job-%016x" % value


def _b(text):
    return text.encode() if isinstance(text, str) else text


def _addr_list(addr):
    """One address, a comma-separated list, or a list or tuple of them."""
    if isinstance(addr, (list, tuple)):
        return ",".join(a.decode() if isinstance(a, bytes) else a for a in addr)
    return addr


class Client:
    """One connection to a router's frontend: addr, else $EMQ_BROKER_ADDR,
    else tcp://127.0.0.1:47291. addr may name several routers of which one
    leads (a list, or "tcp://r1:47291,tcp://r2:47291"): the client follows
    the leader, sending an unACKed job again under its msgid. admin_addr
    (for cancel, status and dead jobs): else $EMQ_ADMIN_ADDR, else
    tcp://127.0.0.1:47293."""

    def __init__(self, addr=None, admin_addr=None, timeout_ms=DEFAULT_TIMEOUT_MS):
        addr = _addr_list(addr)
        self._client = c.lib.emq_client_new(_b(addr))
        if not self._client:
            raise EmqError(c.ERR_INVALID, "emq: cannot connect to %r" % addr)
        self.admin_addr = admin_addr or os.environ.get("EMQ_ADMIN_ADDR")
        self.timeout_ms = timeout_ms

    def close(self):
        if self._client:
            handle = ctypes.c_void_p(self._client)
            c.lib.emq_client_destroy(ctypes.byref(handle))
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: ctypes may be gone
            pass

    @property
    def endpoint(self):
        return c.lib.emq_client_endpoint(self._client).decode()

    def _raise(self, code):
        detail = c.lib.emq_client_last_error(self._client).decode("utf-8", "replace")
        raise (NotFound if code == c.ERR_NOT_FOUND else EmqError)(code, detail)

    def submit_payload(self, payload, queue=None, reply=True, retries=0, timeout=0,
                       delay=0, eta=0, guarantee=False, msgid=None):
        """Sends a job whose payload is already encoded and waits for the
        router's ACK. Returns the job's msgid. queue: None = "default";
        reply: send the result back (needed for wait()); retries: run a
        failed job again up to N times; timeout: seconds before the job is
        killed (0 = never); delay / eta: run it after N seconds / at that
        UNIX time; guarantee: sync it to disk before the ACK."""
        opts = c.SubmitOpts(queue=_b(queue), reply=bool(reply), retries=int(retries),
                            timeout_s=int(timeout), delay_s=int(delay), eta=int(eta),
                            extra_headers=b"guarantee" if guarantee else None,
                            msgid=_b(msgid))
        out = (ctypes.c_char * 37)()
        rc = c.lib.emq_submit(self._client, ctypes.byref(opts), payload, len(payload),
                              out, self.timeout_ms)
        if rc != 0:
            self._raise(rc)
        return out.value.decode()

    def submit(self, func, args=(), kwargs=None, class_args=(), class_kwargs=None,
               **options):
        """Submits a Python job (a function, a bound method, or a dotted
        path) with EventMQ's payload; options as submit_payload. Returns the
        msgid."""
        payload = build_payload(func, args, kwargs, class_args, class_kwargs)
        return self.submit_payload(payload, **options)

    def _result(self, fn, msgid, timeout_ms):
        event = c.Event()
        rc = fn(self._client, _b(msgid), timeout_ms, ctypes.byref(event))
        if rc == c.ERR_TIMEOUT:
            return None
        if event.type != c.EVENT_RESULT:
            if rc == c.ERR_NOT_FOUND:
                raise NotFound(rc, "no such job: %s" % msgid)
            reason = ctypes.string_at(event.data, event.size).decode("utf-8", "replace")
            raise EmqError(rc, "%s: %s" % (event.code.decode(), reason))
        data = ctypes.string_at(event.data, event.size) if event.size else b""
        return Result(event.msgid.decode(), c.JOB_STATUS[event.status], data,
                      event.usage.decode())

    def wait(self, msgid, timeout=None):
        """Waits for the result of a job this client submitted with reply
        (timeout in seconds, None = forever). Returns a Result, or None
        when the time ran out."""
        ms = -1 if timeout is None else int(timeout * 1000)
        return self._result(c.lib.emq_wait_result, msgid, ms)

    def result(self, msgid, timeout=0):
        """The stored outcome of any job, by msgid, from the router (its
        result_ttl): a Result, None while it has not ended (after waiting
        timeout seconds), or NotFound."""
        ms = -1 if timeout is None else int(timeout * 1000)
        return self._result(c.lib.emq_result, msgid, ms)

    def call(self, func, *args, **kwargs):
        """Runs a Python job and returns its value (JobError if it failed)."""
        msgid = self.submit(func, args, kwargs)
        return self.wait(msgid).get()

    # -- the admin socket ---------------------------------------------------

    def _admin(self, command, ref=None):
        reply = ctypes.c_void_p()
        rc = c.lib.emq_admin_job(_b(self.admin_addr), command.encode(), _b(ref),
                                 self.timeout_ms, ctypes.byref(reply))
        text = c.take_string(reply)
        if rc != 0:
            raise (NotFound if rc == c.ERR_NOT_FOUND else EmqError)(
                rc, "%s: %s" % (command, text or c.strerror(rc)))
        return text

    def cancel(self, msgid):
        """Cancels a queued, scheduled or running job (a running one is
        killed). NotFound when the router holds no such job."""
        self._admin("CANCEL", msgid)

    def status(self):
        """The router's STATUS: queues, job managers, storage (a dict)."""
        return json.loads(self._admin("STATUS"))

    def workers(self):
        """ROUTER_SHOW_WORKERS: the connected job managers (a dict)."""
        return json.loads(self._admin("ROUTER_SHOW_WORKERS"))

    def schedulers(self):
        """ROUTER_SHOW_SCHEDULERS: the connected schedulers and, in each
        one's stats, its schedules (a dict)."""
        return json.loads(self._admin("ROUTER_SHOW_SCHEDULERS"))

    def dead_jobs(self):
        """Jobs that used up their retries: a list of dicts (msgid, queue,
        attempts, status, error, created_at, ended_at)."""
        return json.loads(self._admin("DEAD_LIST"))["dead"]

    def retry_dead(self, msgid="*"):
        """Queues a dead job again (all of them with "*"); returns how many."""
        return json.loads(self._admin("DEAD_RETRY", msgid))["retried"]

    def purge_dead(self):
        """Deletes every dead job; returns how many."""
        return json.loads(self._admin("DEAD_PURGE"))["purged"]

    # -- schedules ----------------------------------------------------------

    def schedule_payload(self, payload, interval_secs=None, cron=None, queue=None,
                         name=None, nohaste=False, runs=0, headers=None):
        opts = c.ScheduleOpts(name=_b(name), queue=_b(queue),
                              interval_s=int(interval_secs or 0), cron=_b(cron),
                              nohaste=bool(nohaste), runs=int(runs),
                              extra_headers=_b(headers))
        rc = c.lib.emq_schedule(self._client, ctypes.byref(opts), payload, len(payload),
                                self.timeout_ms)
        if rc != 0:
            self._raise(rc)
        return name or schedule_name(payload)

    def unschedule_name(self, name, kill_running=False):
        rc = c.lib.emq_unschedule(self._client, _b(name), bool(kill_running),
                                  self.timeout_ms)
        if rc != 0:
            self._raise(rc)
