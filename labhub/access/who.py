"""Who a request comes from: a session cookie, ``Authorization: Bearer`` with a person's
API token, or a device token. (Placeholder until accounts land: every request is the
hub itself.)"""

from __future__ import annotations

from fastapi import Request

from labhub.access.caller import Caller


def identify(request: Request) -> Caller | None:
    """The caller of ``request``, or None when it proves nobody."""
    return Caller.system("local")
