"""ctypes bindings to libemq (include/emq/client.h): the only place that
knows the C structures. Everything else in the package calls these."""
import ctypes
import os

# czmq installs SIGINT/SIGTERM handlers with its first socket; in a Python
# program those belong to Python (KeyboardInterrupt), so keep czmq out.
os.environ.setdefault("ZSYS_SIGHANDLER", "false")

MSGID_MAX = 128


class SubmitOpts(ctypes.Structure):
    _fields_ = [
        ("queue", ctypes.c_char_p),
        ("reply", ctypes.c_bool),
        ("retries", ctypes.c_uint32),
        ("timeout_s", ctypes.c_uint32),
        ("extra_headers", ctypes.c_char_p),
        ("delay_s", ctypes.c_uint32),
        ("eta", ctypes.c_uint32),
        ("msgid", ctypes.c_char_p),
    ]


class Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("msgid", ctypes.c_char * (MSGID_MAX + 1)),
        ("status", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("code", ctypes.c_char * 64),
        ("usage", ctypes.c_char * 256),
    ]


class ScheduleOpts(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("queue", ctypes.c_char_p),
        ("interval_s", ctypes.c_int64),
        ("cron", ctypes.c_char_p),
        ("nohaste", ctypes.c_bool),
        ("runs", ctypes.c_uint32),
        ("misfire_skip", ctypes.c_bool),
        ("timezone", ctypes.c_char_p),
        ("extra_headers", ctypes.c_char_p),
    ]


# emq_error_t
OK = 0
ERR_INVALID = -1
ERR_UNREACHABLE = -2
ERR_TIMEOUT = -3
ERR_REJECTED = -4
ERR_JOB_FAILED = -5
ERR_JOB_TIMEOUT = -6
ERR_PROTOCOL = -7
ERR_NOMEM = -8
ERR_SYSTEM = -9
ERR_NOT_FOUND = -10

# emq_event_type_t
EVENT_ACK, EVENT_ERROR, EVENT_RESULT = 0, 1, 2

# emq_job_status_t, by name
JOB_STATUS = ("ok", "failed", "timeout", "crashed", "rejected", "cancelled")


def _candidates():
    forced = os.environ.get("EMQ_LIBEMQ")
    if forced:
        yield forced
        return
    # In the source tree: python/emq/ -> build/lib/libemq.so
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "..", "..", "build", "lib", "libemq.so")
    yield "libemq.so.0"


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append("%s: not found" % path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("emq: cannot load libemq (set EMQ_LIBEMQ to its path): "
                      + "; ".join(errors))


lib = _load()

_p = ctypes.c_void_p
_proto = {
    "emq_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "emq_client_new": (_p, [ctypes.c_char_p]),
    "emq_client_destroy": (None, [ctypes.POINTER(_p)]),
    "emq_client_last_error": (ctypes.c_char_p, [_p]),
    "emq_client_endpoint": (ctypes.c_char_p, [_p]),
    "emq_client_set_connect_timeout": (None, [_p, ctypes.c_int]),
    "emq_submit": (ctypes.c_int, [_p, ctypes.POINTER(SubmitOpts), ctypes.c_char_p,
                                  ctypes.c_size_t, ctypes.c_char * 37, ctypes.c_int]),
    "emq_wait_result": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int,
                                       ctypes.POINTER(Event)]),
    "emq_result": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int,
                                  ctypes.POINTER(Event)]),
    "emq_admin": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(_p)]),
    "emq_admin_job": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                     ctypes.c_int, ctypes.POINTER(_p)]),
    "emq_schedule": (ctypes.c_int, [_p, ctypes.POINTER(ScheduleOpts), ctypes.c_char_p,
                                    ctypes.c_size_t, ctypes.c_int]),
    "emq_unschedule": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_bool, ctypes.c_int]),
}
for _name, (_restype, _argtypes) in _proto.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes

_libc = ctypes.CDLL(None)
_libc.free.argtypes = [_p]
_libc.free.restype = None


def take_string(pointer):
    """Copies and frees a malloc'd C string that libemq handed back."""
    if not pointer.value:
        return ""
    text = ctypes.string_at(pointer.value).decode("utf-8", "replace")
    _libc.free(pointer.value)
    pointer.value = None
    return text


def strerror(code):
    return lib.emq_strerror(code).decode()
