"""Reads of the error queue for the dashboard and other pages (one query each)."""

from __future__ import annotations

from django.db.models import Count

from ledger_sync.models import Problem


def problems_open_counts() -> dict[str, int]:
    """Open problems per kind (only kinds that have some), e.g. for a dashboard card."""
    return dict(
        Problem.objects.filter(status=Problem.Status.OPEN)
        .values_list("kind")
        .annotate(n=Count("pk"))
        .order_by("kind")
    )
