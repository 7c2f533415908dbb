"""What the page tests over HTTP (starlette's client) share: signing in through the
page's own form, reading a form's hidden fields, posting a form."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

from fastapi.testclient import TestClient

FORM = {"content-type": "application/x-www-form-urlencoded"}


def sign_in_form(client: TestClient, name: str, password: str, *, lang: str = "es") -> None:
    """Sign ``client`` in through the password form; its pages are in ``lang`` after."""
    answer = client.post("/signin?next=/", content=urlencode(
        {"way": "password", "name": name, "password": password}), headers=FORM,
        follow_redirects=False)
    assert answer.status_code == 303, answer.text
    client.cookies.set("labhub_lang", lang)


def hidden(page: str, name: str) -> str:
    """The value of the page's (first) field ``name``."""
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, name
    return html.unescape(found.group(1))


def post_form(client: TestClient, path: str, fields: dict[str, str], **headers: str) -> Any:
    """Post ``fields`` url-encoded to ``path``; redirects are not followed."""
    return client.post(path, content=urlencode(fields), headers=FORM | headers,
                       follow_redirects=False)
