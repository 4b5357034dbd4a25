"""The emq package against a real router, job manager and scheduler
(conftest.py): EventMQ's calls, emq's results, retries, delay, cancel,
status, dead jobs and schedules."""
import os
import time

import pytest

import emq
import emqtest_jobs
from emq import jobs


def test_payload_is_eventmqs():
    # EventMQ 0.3.13's defer_job(sock, capjobs.add, args=(2, 3)) payload, as
    # captured on the wire (vectors: client.request.defer_job).
    assert emq.build_payload("capjobs.add", (2, 3)) == (
        b'["run", {"callable": "add", "path": "capjobs", "args": [2, 3], '
        b'"kwargs": {}, "class_args": [], "class_kwargs": {}}]')
    greeter = emqtest_jobs.Greeter("Hello")
    assert emq.job_path(greeter.greet) == ("emqtest_jobs:Greeter", "greet")
    assert emq.job_path(emqtest_jobs.add) == ("emqtest_jobs", "add")
    assert emq.job_path("pkg.mod:Cls.meth") == ("pkg.mod:Cls", "meth")
    # Non-ASCII arguments are \u-escaped, as EventMQ's client sends them.
    assert b"h\\u00e9llo" in emq.build_payload("m.f", ("h\u00e9llo",))


def test_defer_job_and_wait(system):
    with system.client() as client:
        msgid = jobs.defer_job(client, emqtest_jobs.add, args=(2, 3), reply_requested=True)
        result = client.wait(msgid, timeout=20)
        assert result.ok and result.status == "ok"
        assert result.value == 5
        assert "cpu_us=" in result.usage
        assert client.call(emqtest_jobs.echo, 1, "two", k=[1.5, True]) == {
            "args": [1, "two"], "kwargs": {"k": [1.5, True]}}
        assert client.call("emqtest_jobs.nothing") is None


def test_job_decorator(system):
    add = emq.job(emqtest_jobs.add, broker_addr=system.frontend)
    msgid = add.delay(2, 3)  # EventMQ: fire and forget, the msgid back
    assert isinstance(msgid, str) and len(msgid) == 36
    with system.client() as client:
        # The outcome is kept by the router: fetched by msgid from any client.
        result = client.result(msgid, timeout=20)
        assert result is not None and result.value == 5
    assert add.run(40, 2) == 42  # emq: submit, wait, value

    @emq.job(async_=False)
    def local(x):
        return x * 2
    assert local.delay(4) == 8  # async_=False runs in this process
    # EventMQ's socket-first form, under its module name.
    from emq import messages
    with system.client() as client:
        msgid = messages.defer_job(client, "emqtest_jobs.add", args=(1, 1),
                                   reply_requested=True, retry_count=1, timeout=30)
        assert client.wait(msgid, timeout=20).value == 2


def test_job_without_broker_runs_here(monkeypatch):
    # EventMQ: no broker_addr and no EMQ_BROKER_ADDR: run synchronously.
    monkeypatch.delenv("EMQ_BROKER_ADDR", raising=False)
    assert emq.job(emqtest_jobs.add).delay(2, 2) == 4


def test_class_method(system):
    greeter = emqtest_jobs.Greeter("Hello", punctuation="!")
    with system.client() as client:
        msgid = client.submit(greeter.greet, ["emq"], class_args=["Hello"],
                              class_kwargs={"punctuation": "!"})
        assert client.wait(msgid, timeout=20).get() == "Hello, emq!"


def test_failure_has_the_traceback(system):
    with system.client() as client:
        msgid = client.submit(emqtest_jobs.boom, ["bad input"])
        result = client.wait(msgid, timeout=20)
        assert result.status == "failed"
        assert "Traceback" in result.error and "ValueError: bad input" in result.error
        with pytest.raises(emq.JobError) as caught:
            result.get()
        assert caught.value.status == "failed"
        # Outside the job manager's allow-list (emqtest_*): refused.
        msgid = client.submit("os.getcwd")
        result = client.wait(msgid, timeout=20)
        assert result.status == "rejected" and "python_allow" in result.error


def test_retries(system, tmp_path):
    marker = str(tmp_path / "flaky.marker")
    with system.client() as client:
        msgid = client.submit(emqtest_jobs.flaky, [marker], retries=2)
        assert client.wait(msgid, timeout=30).get() == "second attempt"
        assert os.path.exists(marker)


def test_timeout_and_cancel(system):
    with system.client() as client:
        started = time.monotonic()
        msgid = client.submit(emqtest_jobs.forever, timeout=1)
        result = client.wait(msgid, timeout=20)
        assert result.status == "timeout"
        assert time.monotonic() - started < 10

        msgid = client.submit(emqtest_jobs.forever)
        system.wait_for(lambda: msgid in str(client.workers()), what="the job to run")
        client.cancel(msgid)
        assert client.wait(msgid, timeout=20).status == "cancelled"
        with pytest.raises(emq.NotFound):
            client.cancel("00000000-0000-4000-8000-000000000000")


def test_delay(system):
    with system.client() as client:
        started = time.monotonic()
        msgid = client.submit(emqtest_jobs.add, [1, 1], delay=1)
        assert client.wait(msgid, timeout=20).value == 2
        assert time.monotonic() - started >= 1.0


def test_eta_and_unknown_job(system):
    with system.client() as client:
        msgid = client.submit(emqtest_jobs.add, [2, 2], eta=int(time.time()) + 1,
                              guarantee=True)
        assert client.wait(msgid, timeout=20).value == 4
        with pytest.raises(emq.NotFound):
            client.result("00000000-0000-4000-8000-000000000001", timeout=5)
        # A job still running: no result yet.
        msgid = client.submit(emqtest_jobs.sleep, [2])
        assert client.result(msgid, timeout=0.2) is None
        assert client.wait(msgid, timeout=20).value == 2


def test_dead_jobs(system):
    with system.client() as client:
        msgid = client.submit(emqtest_jobs.boom, ["always"], retries=1)
        result = client.wait(msgid, timeout=30)
        assert result.status == "failed"
        dead = [d for d in client.dead_jobs() if d["msgid"] == msgid]
        assert len(dead) == 1 and dead[0]["attempts"] == 2
        assert client.retry_dead(msgid) == 1
        system.wait_for(lambda: any(d["msgid"] == msgid for d in client.dead_jobs()),
                        timeout=30, what="the retried job to be dead again")
        assert client.purge_dead() >= 1
        assert not [d for d in client.dead_jobs() if d["msgid"] == msgid]


def test_status(system):
    with system.client() as client:
        status = client.status()
        assert status["job_managers"] == 1
        assert "default" in status["queues"]
        workers = client.workers()["connected_workers"]
        assert any(name.startswith("pyjm-") for name in workers)


def _schedules(client):
    names = []
    for scheduler in client.schedulers()["connected_schedulers"].values():
        names += [s["name"] for s in scheduler.get("stats", {}).get("schedules", [])]
    return names


def test_schedule_and_unschedule(system, tmp_path):
    with system.client() as client:
        before = client.status()["queues"]["default"]["processed"]
        name = jobs.schedule(emqtest_jobs.add, broker_addr=system.frontend,
                             interval_secs=1, args=(1, 2))
        assert name == emq.schedule_name(emq.build_payload(emqtest_jobs.add, (1, 2)))
        system.wait_for(lambda: name in _schedules(client), what="the schedule")
        system.wait_for(lambda: client.status()["queues"]["default"]["processed"]
                        >= before + 2, timeout=15, what="two runs of the schedule")
        # EventMQ's unschedule names the schedule by the same job.
        assert jobs.unschedule(emqtest_jobs.add, broker_addr=system.frontend,
                               args=(1, 2)) == name
        system.wait_for(lambda: name not in _schedules(client), what="the unschedule")


def test_router_list(system, tmp_path):
    # A list of routers, the first never up: the client moves on to the
    # one that takes its jobs, and the job runs once.
    gone = "ipc://%s/no-router" % tmp_path
    for addr in ([gone, system.frontend], "%s,%s" % (gone, system.frontend)):
        with emq.Client(addr, admin_addr=system.admin) as client:
            msgid = client.submit(emqtest_jobs.add, [20, 22], reply=True)
            assert client.wait(msgid, timeout=20).value == 42
    add = emq.job(emqtest_jobs.add, broker_addr=[gone, system.frontend])
    assert add.run(1, 2) == 3


def test_unreachable_router(tmp_path):
    client = emq.Client("ipc://%s/nobody" % tmp_path, timeout_ms=300)
    with pytest.raises(emq.EmqError) as caught:
        client.submit(emqtest_jobs.add, [1, 2])
    assert "unreachable" in str(caught.value) or caught.value.code == -2
    client.close()
