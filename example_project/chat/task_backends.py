"""A ``django.tasks`` backend that runs each task in a thread of this process.

Django 6 ships ``ImmediateBackend`` (runs the task inside ``enqueue``, so the
response waits for it) and ``DummyBackend`` (never runs it). The example needs
a turn that really runs after the response has gone out, without a separate
worker process to start; this backend is that: ``enqueue`` returns at once and
a thread pool runs the task. Results live in memory, so ``get_result`` works
within this process only. A queue with separate workers (a database-backed
backend, for instance) can replace it in ``TASKS`` without code changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections, connections
from django.tasks.backends.immediate import ImmediateBackend
from django.tasks.base import Task, TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils.crypto import get_random_string

# Finished results are kept for polling, up to this many per backend.
KEPT_RESULTS = 1000


@dataclass
class _Pool:
    """The threads and results of one ``TASKS`` alias, shared by the whole process."""

    executor: ThreadPoolExecutor
    results: OrderedDict[str, TaskResult] = field(default_factory=OrderedDict)
    running: set[Future[None]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


# django.tasks builds backend instances per async context (like database
# connections), so one request's instance is not the next one's: the pool
# and the results must live outside the instance for get_result to find them.
_pools: dict[str, _Pool] = {}
_pools_lock = threading.Lock()


def _pool(alias: str, max_workers: int) -> _Pool:
    with _pools_lock:
        if alias not in _pools:
            executor = ThreadPoolExecutor(
                max_workers=max_workers, thread_name_prefix=f"django-tasks-{alias}"
            )
            _pools[alias] = _Pool(executor)
        return _pools[alias]


class ThreadBackend(ImmediateBackend):
    """``OPTIONS``: ``MAX_WORKERS`` (default 4), the number of tasks run at once."""

    supports_get_result = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._pool = _pool(alias, int(self.options.get("MAX_WORKERS", 4)))

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Queue ``task`` and return its result, status ``READY``, without waiting."""
        self.validate_task(task)
        result = TaskResult(
            task=task,
            id=get_random_string(32),
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        pool = self._pool
        with pool.lock:
            pool.results[result.id] = result
            while len(pool.results) > KEPT_RESULTS:
                pool.results.popitem(last=False)
            future = pool.executor.submit(self._run, result)
            pool.running.add(future)
        future.add_done_callback(self._forget)
        return result

    def _run(self, result: TaskResult) -> None:
        # ImmediateBackend's execution records status, errors and the return
        # value on the result and sends the task signals; only the thread is new.
        try:
            self._execute_task(result)
        finally:
            # This thread's connections would otherwise stay open for good, as
            # they would in a request without the request_finished signal.
            close_old_connections()
            connections.close_all()

    def _forget(self, future: Future[None]) -> None:
        with self._pool.lock:
            self._pool.running.discard(future)

    def get_result(self, result_id: str) -> TaskResult:
        with self._pool.lock:
            try:
                return self._pool.results[result_id]
            except KeyError:
                raise TaskResultDoesNotExist(result_id) from None

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every queued task has finished; ``TimeoutError`` after ``timeout`` s."""
        with self._pool.lock:
            running = list(self._pool.running)
        _, not_done = wait(running, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} task(s) still running after {timeout} s")
