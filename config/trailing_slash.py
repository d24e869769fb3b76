"""Management API paths answer with or without their trailing slash, for every method.

The management API follows DRF's router convention (``/api/v1/experiments/{key}/start/``). Django's
``APPEND_SLASH`` redirects a GET that misses the slash, but it cannot redirect a POST without losing
its body (in debug it raises an error page instead), and API clients do forget the slash. So under
``/api/`` a request whose path does not resolve, but resolves with the slash added (or removed, for
the few exact paths such as ``/api/v1/power``), is routed there as it is, without a redirect.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from django.http import HttpRequest, HttpResponse
from django.urls import get_urlconf, is_valid_path

SAFE_METHODS = ("GET", "HEAD")  # APPEND_SLASH's redirect serves these


@lru_cache(maxsize=4096)  # the SDK endpoints are POSTs too: one dictionary lookup on their hot path
def _route(path: str, urlconf: str | None) -> str:
    """The path to dispatch: ``path`` itself, or its other form when only that one exists."""
    if is_valid_path(path, urlconf):  # what CommonMiddleware's APPEND_SLASH asks too
        return path
    other = path[:-1] if path.endswith("/") else f"{path}/"
    return other if is_valid_path(other, urlconf) else path


class ApiTrailingSlashMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith("/api/") and request.method not in SAFE_METHODS:
            route = _route(path, get_urlconf())
            if route != path:
                request.path_info = route
                request.path = f"{request.path[: len(request.path) - len(path)]}{route}"
        return self.get_response(request)
