"""EventMQ-style hooks for emq's python job tests: setup runs once per
worker, entry and exit around each job; events() shows what ran."""
_events = []


def setup():
    _events.append("setup")


def entry():
    _events.append("entry")


def exit():
    _events.append("exit")


def events():
    return list(_events)
