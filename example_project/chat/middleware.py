"""Friendly "bad request", "not found" and "forbidden" pages, with ``DEBUG`` on or off.

Django answers an unknown URL with a bare "Not Found" (with ``DEBUG=1``, its
technical page listing every URL pattern), a ``PermissionDenied`` with a bare
"403 Forbidden" and a request too large to read (a pasted book) with "Bad
Request (400)". A user who follows an old link, or another user's link, to a
conversation, or sends too much, gets one of these pages instead: what
happened and the way back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.utils.decorators import sync_and_async_middleware

TEMPLATES = {400: "chat/400.html", 403: "chat/403.html", 404: "chat/404.html"}


def friendly(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """``chat/400.html``, ``403.html`` or ``404.html`` for Django's page; JSON answers stay."""
    template = TEMPLATES.get(response.status_code)
    if template is None or response.get("Content-Type", "").startswith("application/json"):
        return response
    page = TemplateResponse(request, template, {"path": request.path}, status=response.status_code)
    return page.render()


@sync_and_async_middleware
def friendly_not_found(get_response: Callable[[HttpRequest], Any]) -> Callable[..., Any]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            # Rendering reads request.user (the page's header), a query: in a thread.
            return await sync_to_async(friendly)(request, await get_response(request))

        return markcoroutinefunction(async_middleware)

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return friendly(request, get_response(request))

    return middleware
