"""Background work: queueing django-q2 tasks from a request, and the one retry backoff.

Shared machinery: imports no domain service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task


def task_queuer(func: str) -> Callable[[int], None]:
    """Queue `func` for one record id, named after the task and the id."""

    def queue(pk: int) -> None:
        task_enqueue(func, pk, task_name=f"{func.rsplit('.', 1)[-1]}-{pk}")

    return queue


def task_enqueue(func: str, *args: Any, task_name: str) -> None:
    """Queue a django-q2 task from inside a web request."""
    async_task(func, *args, task_name=task_name, broker=_request_broker())


_broker_cache: dict[str, Any] = {}


def _request_broker() -> Any:
    """The ORM broker without its habit of closing "old" connections before each enqueue.

    That habit suits django-q2's long-lived cluster threads; inside a request it closes the
    request's own connection whenever CONN_MAX_AGE is 0 (the SQLite default), so the next query
    reconnects — a millisecond or more on the webhook's hot path. Django already manages the
    request's connection. Other brokers are used as configured.
    """
    if "broker" not in _broker_cache:
        broker = get_broker()
        if type(broker) is ORM:

            class InRequestOrmBroker(ORM):
                @staticmethod
                def get_connection(list_key: str | None = None) -> Any:
                    return OrmQ.objects.using(Conf.ORM)

            broker = InRequestOrmBroker(list_key=broker.list_key)
        _broker_cache["broker"] = broker
    return _broker_cache["broker"]


def backoff_delay(attempts: int) -> timedelta:
    """base * 2^(attempts-1), capped: 1 min, 2, 4 ... 1 h with the default settings."""
    base = settings.LEDGER_RETRY_BASE_SECONDS
    seconds = min(base * (2 ** max(attempts - 1, 0)), settings.LEDGER_RETRY_MAX_SECONDS)
    return timedelta(seconds=seconds)
