"""Jobs for emq's python job tests (tests/python_jobs.c, python/tests/).

Each function is what a real EventMQ job looks like: a module-level
callable, or a method of a class built from class_args / class_kwargs.
"""
import os
import time


def add(a, b):
    return a + b


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def nothing():
    return None


def boom(message):
    raise ValueError(message)


def aset():
    return {1, 2}


def forever():
    while True:
        pass


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def abort():
    os.abort()


def flaky(marker):
    """Fails on its first attempt, succeeds on the next (a file in the
    worker's directory remembers the attempt)."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("first attempt\n")
        raise RuntimeError("first attempt fails")
    return "second attempt"


def worker_pid():
    return os.getpid()


class Greeter:
    def __init__(self, greeting, punctuation=""):
        self.greeting = greeting
        self.punctuation = punctuation

    def greet(self, name):
        return "%s, %s%s" % (self.greeting, name, self.punctuation)


def segfault():
    """Crashes the interpreter from C, as a broken extension would."""
    import ctypes
    ctypes.string_at(0)


_kept = []


def hog(megabytes):
    """Grows the worker's resident set by about that many MiB and keeps it."""
    _kept.append(b"x" * (megabytes * 1024 * 1024))
    return len(_kept)
