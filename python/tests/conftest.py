"""Fixtures for the emq package's tests: a real emq-router, emq-jobmanager
(one worker pool running tests/python's modules) and emq-scheduler, on
ipc:// paths in a fresh directory, started once per test session and
stopped (their whole process groups) at the end.

BUILD names the build directory (default build/, as make check sets it).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD", "build")))
MODULES = os.path.join(ROOT, "tests", "python")

# The package itself and the job modules (so tests can name real functions).
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, MODULES)
os.environ.setdefault("EMQ_LIBEMQ", os.path.join(BUILD, "lib", "libemq.so"))

import emq  # noqa: E402


class System:
    def __init__(self, directory):
        self.dir = directory
        self.frontend = "ipc://%s/frontend" % directory
        self.backend = "ipc://%s/backend" % directory
        self.admin = "ipc://%s/admin" % directory
        self.procs = []

    def spawn(self, name, *args):
        log = open(os.path.join(self.dir, name + ".log"), "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTMQ_")}
        # emq's package turns czmq's signal handlers off for this process;
        # the programs rely on them for a graceful SIGTERM.
        env.pop("ZSYS_SIGHANDLER", None)
        if env.pop("EMQ_PYTEST_SANITIZED", None):
            # tests/run preloaded ASan for this interpreter only: the emq
            # programs are ASan builds themselves and keep leak checking.
            env.pop("LD_PRELOAD", None)
            env.pop("ASAN_OPTIONS", None)
        # An empty config file: nothing from /etc/eventmq.conf leaks in.
        env["EVENTMQ_CONFIG_FILE"] = os.path.join(self.dir, "empty.conf")
        open(env["EVENTMQ_CONFIG_FILE"], "a").close()
        proc = subprocess.Popen([os.path.join(BUILD, "bin", name)] + list(args),
                                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                env=env, start_new_session=True)
        self.procs.append((proc, log))
        return proc

    def client(self, **kwargs):
        return emq.Client(self.frontend, admin_addr=self.admin, **kwargs)

    def wait_for(self, condition, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except emq.EmqError:
                pass
            time.sleep(0.05)
        raise AssertionError("timed out waiting for " + what)

    def stop(self):
        """Stops every program (SIGTERM, then SIGKILL after 5 s); returns
        the ones that did not exit 0 on SIGTERM (a sanitizer report, a
        crash, a hang)."""
        bad = []
        for proc, log in reversed(self.procs):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            proc.wait()
            if proc.returncode != 0:
                bad.append("%s exited %s (see %s)" % (proc.args[0], proc.returncode,
                                                      log.name))
            log.close()
        return bad


HEARTBEATS = ["--heartbeat-interval", "0.2", "--heartbeat-timeout", "0.5",
              "--heartbeat-liveness", "3"]


@pytest.fixture(scope="session")
def system():
    if not os.path.exists(os.path.join(BUILD, "lib", "emq", "emq_python.so")):
        pytest.skip("emq is not built in %s (run make)" % BUILD)
    directory = tempfile.mkdtemp(prefix="emq-pytest-")
    s = System(directory)
    try:
        s.spawn("emq-router", "--frontend", s.frontend, "--backend", s.backend,
                "--admin", s.admin, "--data-dir", os.path.join(directory, "data"),
                "--fsync", "off", *HEARTBEATS)
        s.spawn("emq-jobmanager", "--backend-addr", s.backend, "--concurrent-jobs", "2",
                "--name", "pyjm", "--python-path", MODULES, "--python-allow", "emqtest_*",
                *HEARTBEATS)
        s.spawn("emq-scheduler", "--router", s.frontend, "--admin", s.admin,
                "--data-dir", os.path.join(directory, "sched"), *HEARTBEATS)
        with s.client() as client:
            s.wait_for(lambda: client.status().get("job_managers", 0) >= 1,
                       what="the job manager")
            s.wait_for(lambda: client.schedulers().get("connected_schedulers"),
                       what="the scheduler")
        yield s
    finally:
        bad = s.stop()
        if os.environ.get("EMQ_TEST_KEEP") != "1" and not bad:
            shutil.rmtree(directory, ignore_errors=True)
    assert not bad, "; ".join(bad)
