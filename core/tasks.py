"""The worker queue (huey): its configuration, the tasks on it, the context a task runs in.

``BILLHIVE_QUEUE`` (``QUEUE`` in the app config) picks the mode: ``inline`` (the default
without Redis: work runs in the process that starts it), ``sqlite`` (a ``SqliteHuey`` queue in
a file of the data dir, ``BILLHIVE_QUEUE_PATH``, default ``<data dir>/queue.db``) or
``redis`` (a ``PriorityRedisHuey`` queue on ``BILLHIVE_REDIS_URL``); ``billhive worker``
consumes it (:func:`core.billing.runs.queue.run_worker`).

The modules that own work register their task functions with :func:`task` when they are
imported (:mod:`core.billing.runs.queue`: plan, bill, render, sweep, dunning;
:mod:`core.mail.tasks`: mail); building the application imports both, and :class:`Queue`
refuses to start with one missing. This module imports none of them, so each may import it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import peewee as pw
from flask import current_app
from huey import PriorityRedisHuey, SqliteHuey
from huey.storage import SqliteStorage

MODES = ("inline", "sqlite", "redis")
# higher runs first (SqliteHuey and PriorityRedisHuey order by priority, then FIFO)
PRIORITY = {"sweep": 30, "plan": 20, "bill": 10, "mail": 5, "dunning": 5, "render": 0}

_TASKS: dict[str, Callable] = {}  # kind -> function, registered by the modules that own them


def task(kind: str) -> Callable[[Callable], Callable]:
    """Register the function of the task ``kind`` (a key of :data:`PRIORITY`): every
    :class:`Queue` has it as ``<kind>_task``, named ``billhive_<kind>`` on huey."""
    if kind not in PRIORITY:
        raise ValueError(f"unknown task '{kind}' (one of {', '.join(PRIORITY)})")

    def register(function: Callable) -> Callable:
        _TASKS[kind] = function
        return function

    return register


class QueueError(Exception):
    pass


# -- configuration ---------------------------------------------------------------------------


def mode(config) -> str:
    value = (config.get("QUEUE") or "inline").lower()
    if value not in MODES:
        raise QueueError(f"BILLHIVE_QUEUE must be one of {', '.join(MODES)}, not '{value}'")
    return value


def backend(config) -> str:
    """The queue a queued run uses: ``redis`` or ``sqlite`` (``inline`` mode queues on
    Redis when a URL is set, else on the SQLite file)."""
    value = mode(config)
    if value == "inline":
        return "redis" if config.get("REDIS_URL") else "sqlite"
    if value == "redis" and not config.get("REDIS_URL"):
        raise QueueError("BILLHIVE_QUEUE=redis needs BILLHIVE_REDIS_URL (redis://host:6379/0)")
    return value


def queued_by_default(config) -> bool:
    return mode(config) != "inline"


def describe(config) -> str:
    if backend(config) == "redis":
        return f"redis queue '{queue_name(config)}' at {config['REDIS_URL']}"
    return f"sqlite queue '{queue_name(config)}' in {queue_path(config)}"


def queue_name(config) -> str:
    return config.get("QUEUE_NAME") or "billhive"


def queue_path(config) -> str:
    return config.get("QUEUE_PATH") or str(Path(config["DATA_DIR"]) / "queue.db")


def stale_seconds(config) -> float:
    return float(config.get("QUEUE_STALE_SECONDS") or 120)


class _SqliteStorage(SqliteStorage):
    """huey's SQLite storage with synchronous=NORMAL: WAL keeps the file consistent, and a
    message lost to a power cut is found again by the sweeper (the run lives in the
    database). huey offers FULL (an fsync per message) or OFF only."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=1")
        return conn


class _SqliteHuey(SqliteHuey):
    storage_class = _SqliteStorage


class Queue:
    """One huey instance with Billhive's tasks (:func:`task`) registered on it: ``plan_task``,
    ``bill_task``, ``render_task``, ``sweep_task``, ``dunning_task``, ``mail_task``."""

    def __init__(self, config):
        self.backend = backend(config)
        name = queue_name(config)
        if self.backend == "redis":
            self.huey = PriorityRedisHuey(name, url=config["REDIS_URL"], results=False)
        else:
            path = queue_path(config)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.huey = _SqliteHuey(name, filename=path, results=False, timeout=30)
        self.stale_seconds = stale_seconds(config)
        self.heartbeat_seconds = max(0.2, self.stale_seconds / 6)
        missing = sorted(set(PRIORITY) - set(_TASKS))
        if missing:  # a task module was not imported: its tasks would never be run
            raise QueueError(f"no function registered for the task(s) {', '.join(missing)}")
        for kind, function in _TASKS.items():  # plan_task, bill_task, ..., mail_task
            registered = self.huey.task(name=f"billhive_{kind}", priority=PRIORITY[kind])
            setattr(self, f"{kind}_task", registered(function))

    def pending_count(self) -> int:
        return self.huey.pending_count()


def get_queue(app=None) -> Queue:
    app = app or current_app._get_current_object()
    state = app.extensions.setdefault("billhive_queue", {})
    if "queue" not in state:
        state["queue"] = Queue(app.config)
    return state["queue"]


# -- the worker process ----------------------------------------------------------------------

_app = None  # the application a worker process serves (set by bind)
_refreshed = [0.0]  # when this process last looked for plugins enabled or disabled
REFRESH_SECONDS = 1.0


def bind(app) -> None:
    """Serve ``app`` in this process (a worker, or :func:`core.billing.runs.queue.drain`)."""
    global _app
    _app = app
    _refreshed[0] = 0.0


@contextmanager
def task_context():
    """Around each task: the served application's context and its database connection."""
    app = _app
    if app is None:
        raise QueueError("queue tasks run in a worker: start one with `billhive worker`")
    db = app.extensions["billhive"].database
    with app.app_context():
        db.connect(reuse_if_open=True)  # one connection per worker, kept between tasks
        try:
            if time.monotonic() - _refreshed[0] > REFRESH_SECONDS:
                app.extensions["billhive"].host.refresh()  # a query: once a second is enough
                _refreshed[0] = time.monotonic()
            yield app
        except (pw.OperationalError, pw.InterfaceError):
            # the connection may be broken (database restarted): the next task opens anew
            if not db.is_closed() and not db.in_transaction():
                db.close()
            raise
