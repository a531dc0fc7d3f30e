"""The ATLAS token answer is read tolerantly: the token at data.token, data.access_token or the
top level; expiresIn optional. Served over real HTTP by a one-route app per shape."""

from __future__ import annotations

import pytest

from integration.atlas.client import DEFAULT_TOKEN_LIFETIME_SECONDS, AtlasClient
from integration.atlas.errors import AtlasProtocolError
from integration.sandbox.server import SandboxServer

ORDERS = b'{"success": true, "recordCount": 0, "data": []}'


def _serve(token_answer: bytes):
    seen: list[str] = []

    def app(environ, start_response):
        seen.append(environ.get("HTTP_AUTHORIZATION", ""))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [token_answer if environ["PATH_INFO"] == "/api/token" else ORDERS]

    return SandboxServer(app).start(), seen


class _Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _client(url: str, clock: _Clock) -> AtlasClient:
    return AtlasClient(
        base_url=url,
        username="svc",
        password="pw",
        sleep=lambda _: None,
        clock=clock,
        max_retries=0,
    )


@pytest.mark.parametrize(
    ("answer", "lifetime"),
    [
        (b'{"success": true, "data": {"token": "tok-1", "expiresIn": 1800}}', 1800),
        (b'{"success": true, "data": {"access_token": "tok-1", "expires_in": 600}}', 600),
        (b'{"success": true, "data": {"token": "tok-1"}}', DEFAULT_TOKEN_LIFETIME_SECONDS),
        (b'{"token": "tok-1", "expiresIn": 900}', 900),
        (b'{"access_token": "tok-1"}', DEFAULT_TOKEN_LIFETIME_SECONDS),
        (b'{"success": true, "token": "tok-1", "data": {}}', DEFAULT_TOKEN_LIFETIME_SECONDS),
    ],
)
def test_the_token_is_found_wherever_the_answer_puts_it(answer, lifetime):
    server, seen = _serve(answer)
    clock = _Clock()
    try:
        client = _client(server.url, clock)
        client.get_orders()
    finally:
        server.stop()

    assert seen[-1] == "Bearer tok-1"
    assert client._token_expires_at == clock.now + lifetime


@pytest.mark.parametrize(
    "answer",
    [
        b'{"success": true, "data": {"expiresIn": 3600}}',
        b'{"success": true, "data": {"token": ""}}',
        b'{"success": true, "data": ["tok-1"]}',
    ],
)
def test_an_answer_without_a_token_names_where_it_was_looked_for(answer):
    server, _ = _serve(answer)
    try:
        client = _client(server.url, _Clock())
        with pytest.raises(AtlasProtocolError) as caught:
            client.get_orders()
    finally:
        server.stop()

    assert caught.value.endpoint == "/api/token"
    assert "data.token, data.access_token" in str(caught.value)
    assert "token" in str(caught.value) and "ATLAS_BASE_URL" in str(caught.value)
