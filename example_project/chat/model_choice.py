"""Which model answers: a real OpenAI model with an API key, else the offline one.

Read from the environment at every turn, so the same code serves a fresh
machine (no key) and a real deployment without a settings change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agents import Model
from agents.models import get_default_model

from chat.offline_model import MODEL_NAME, OfflineModel

_offline = OfflineModel()


def chosen_model(environ: Mapping[str, str] | None = None) -> Model | str | None:
    """The ``model`` to give the ``Agent``.

    - ``OPENAI_API_KEY`` set: ``OPENAI_MODEL`` if set, else ``None``, which is
      the SDK's default OpenAI model.
    - otherwise: the shared ``OfflineModel``.
    """
    env = os.environ if environ is None else environ
    if env.get("OPENAI_API_KEY", "").strip():
        return env.get("OPENAI_MODEL", "").strip() or None
    return _offline


def uses_offline_model(environ: Mapping[str, str] | None = None) -> bool:
    return isinstance(chosen_model(environ), OfflineModel)


def model_label(environ: Mapping[str, str] | None = None) -> str:
    """How the page names the model in use."""
    model = chosen_model(environ)
    if isinstance(model, OfflineModel):
        return f"{MODEL_NAME} (local, no API key)"
    if model is None:
        return f"{get_default_model()} (OpenAI)"
    return f"{model} (OpenAI)"
