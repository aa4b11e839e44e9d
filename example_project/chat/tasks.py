"""The background variant of a turn, on Django's tasks framework.

Django >= 6.0 has ``django.tasks``: the turn is a task, enqueued on the backend
``TASKS`` names (``chat.task_backends.ThreadBackend`` in this project). Django
5.2 has no tasks framework, so there the "background" turn simply runs before
the response, and the page shows the reply at once.
"""

from __future__ import annotations

import logging
from typing import Literal

from chat.agent import run_turn

try:
    from django.tasks import task
    from django.tasks.base import TaskError, TaskResultStatus
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:  # Django 5.2
    task = None

TurnState = Literal["running", "done", "failed"]
BACKGROUND_FAILED = (
    "The reply could not be written in the background. Your message was not added to "
    "the conversation: it is back in the box below, so you can send it again."
)
logger = logging.getLogger(__name__)

if task is not None:

    @task
    async def run_turn_task(session_id: str, text: str, owner_id: int | None = None) -> str:
        """Run one turn of conversation ``session_id`` (as user ``owner_id``); the answer's text."""
        result = await run_turn(session_id, text, owner_id)
        return str(result.final_output)

else:
    run_turn_task = None


def background_available() -> bool:
    """True when turns can really run in the background (``django.tasks`` exists)."""
    return run_turn_task is not None


async def start_turn(session_id: str, text: str, owner_id: int | None = None) -> str | None:
    """Start a turn of user ``owner_id`` in the background; its task result id.

    Without ``django.tasks`` the turn runs here and now, and ``None`` is returned.
    """
    if run_turn_task is None:
        await run_turn(session_id, text, owner_id)
        return None
    result = await run_turn_task.aenqueue(session_id, text, owner_id)
    return str(result.id)


async def turn_state(task_id: str) -> tuple[TurnState, str | None]:
    """``(state, error)`` of the background turn ``task_id``.

    A result the backend cannot report (unknown id, or a backend without
    results) counts as done: the page then shows whatever the database holds.
    """
    if run_turn_task is None:
        return "done", None
    try:
        result = await run_turn_task.aget_result(task_id)
    except (TaskResultDoesNotExist, NotImplementedError):
        return "done", None
    if result.status == TaskResultStatus.FAILED:
        # The reason is for the log; the visitor reads what happened and what to do.
        logger.warning("background turn %s failed: %s", task_id, failure_reason(result.errors))
        return "failed", BACKGROUND_FAILED
    if result.status == TaskResultStatus.SUCCESSFUL:
        return "done", None
    return "running", None


def failure_reason(errors: list[TaskError]) -> str:
    """The exception's class and message, e.g. ``builtins.ValueError: items[0] ...``."""
    if not errors:
        return "unknown error"
    error = errors[-1]
    lines = error.traceback.strip().splitlines() if error.traceback else []
    message = lines[-1].partition(": ")[2] if lines and ": " in lines[-1] else ""
    return f"{error.exception_class_path}: {message}" if message else error.exception_class_path
