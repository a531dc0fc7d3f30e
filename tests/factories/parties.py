"""Factories for ERP parties, match proposals, counterparty mappings and users with roles."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from ledger_sync.models import CounterpartyMapping, ErpParty, MatchProposal, WriteBackState
from ledger_sync.services.roles import ACCOUNTANT, FINANCE_LEAD, roles_ensure
from tests.factories.atlas import CounterpartyFactory


class ErpPartyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ErpParty
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"BA-{100001 + n:06d}")
    legal_name = factory.Sequence(lambda n: f"Party {n} GmbH")
    vat = ""
    iban = ""
    role = ErpParty.Role.BOTH
    active = True


class MatchProposalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MatchProposal

    counterparty = factory.SubFactory(CounterpartyFactory)
    erp_party = factory.SubFactory(ErpPartyFactory)
    score = 90
    reasons = factory.LazyFunction(
        lambda: [{"code": "vat_equal", "points": 60, "text": "VAT DE129273398 equal"}]
    )
    rank = 1
    proposed_at = factory.LazyFunction(timezone.now)


class CounterpartyMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CounterpartyMapping

    counterparty = factory.SubFactory(CounterpartyFactory)
    erp_party = factory.SubFactory(ErpPartyFactory)
    erp_code = factory.SelfAttribute("erp_party.code")
    source = CounterpartyMapping.Source.PROPOSAL
    write_back_state = WriteBackState.PENDING


def user_in_group(group_name: str, *, username: str | None = None, staff: bool = True):
    """A staff user in one of the roles (the groups are created as the migration would)."""
    roles_ensure()
    user = get_user_model().objects.create_user(
        username=username or group_name.lower().replace(" ", "_"),
        password="secret-password",
        is_staff=staff,
    )
    user.groups.add(Group.objects.get(name=group_name))
    return get_user_model().objects.get(pk=user.pk)  # fresh, so no permission cache


def finance_lead(**kwargs):
    return user_in_group(FINANCE_LEAD, **kwargs)


def accountant(**kwargs):
    return user_in_group(ACCOUNTANT, **kwargs)
