"""One outbound HTTP session per client, with a timeout that cannot be forgotten.

requests has no default timeout: a remote that accepts the connection and never answers would
hang a worker for ever. Every call through this session gets the client's timeout unless the
caller passes its own. Retries are not done here: each client knows which failures its remote
system allows to be retried (see integration/atlas/client.py, integration/gotransverse/client.py).
"""

from __future__ import annotations

from typing import Any

import requests

USER_AGENT = "ledger_sync/0.1 (+https://github.com/ledger-sync)"


class TimeoutSession(requests.Session):
    def __init__(self, *, timeout: float):
        super().__init__()
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.default_timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        self.headers["Accept"] = "application/json"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)
