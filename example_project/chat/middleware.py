"""A friendly "not found" page, even with ``DEBUG`` on.

The example runs with ``DEBUG=1``, where Django answers an unknown URL with its
technical page listing every URL pattern. A visitor who follows an old link to
a conversation gets this page instead: what happened and the way back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.utils.decorators import sync_and_async_middleware

NOT_FOUND_TEMPLATE = "chat/404.html"


def friendly(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """``chat/404.html`` instead of any HTML 404; JSON answers (status polling) stay."""
    if response.status_code != 404 or response.get("Content-Type", "").startswith(
        "application/json"
    ):
        return response
    page = TemplateResponse(request, NOT_FOUND_TEMPLATE, {"path": request.path}, status=404)
    return page.render()


@sync_and_async_middleware
def friendly_not_found(get_response: Callable[[HttpRequest], Any]) -> Callable[..., Any]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            return friendly(request, await get_response(request))

        return markcoroutinefunction(async_middleware)

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return friendly(request, get_response(request))

    return middleware
