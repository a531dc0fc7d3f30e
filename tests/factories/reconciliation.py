"""Factories for reconciliation runs and their differences (admin and export tests)."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.utils import timezone

from ledger_sync.models import ReconciliationDifference, ReconciliationRun


class ReconciliationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReconciliationRun

    trigger = "test"
    status = ReconciliationRun.Status.DONE
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class ReconciliationDifferenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReconciliationDifference

    run = factory.SubFactory(ReconciliationRunFactory)
    level = ReconciliationDifference.Level.ORDER
    kind = ReconciliationDifference.Kind.MISSING_IN_LEDGER
    key = factory.Sequence(lambda n: f"journal:ATLAS-ORDER-{n}-R1:missing")
    record_label = factory.Sequence(lambda n: f"ATLAS-ORDER-{n}-R1")
    currency = "EUR"
    ours_amount = Decimal("1234567.89")
    ledger_amount = Decimal("0.00")
    amount = Decimal("-1234567.89")
    likely_cause = "We recorded it as posted, but the AR Ledger holds no such transaction."
