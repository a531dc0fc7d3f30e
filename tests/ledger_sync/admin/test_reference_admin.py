import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from ledger_sync.models import PostingSettings, PostingSettingsChange
from tests.factories.reference import (
    GLAccountFactory,
    LedgerFactory,
    PostingSettingsFactory,
    monthly_periods,
    sandbox_chart,
)

pytestmark = pytest.mark.django_db

SETTINGS_URL = reverse("admin:ledger_sync_postingsettings_change", args=[1])


def _staff(username, *perms):
    user = get_user_model().objects.create_user(username, password="x", is_staff=True)
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="ledger_sync", codename=codename)
        )
    return user


@pytest.fixture
def ledger(settings):
    settings.GOTRANSVERSE_LEDGER_ID = "1"
    return LedgerFactory(gotransverse_id=1, name="EUR ledger")


@pytest.fixture
def finance_lead(client):
    user = _staff("lead", "view_postingsettings", "change_postingsettings")
    client.force_login(user)
    return user


def _form_data(**overrides):
    data = {
        "receivables_account": "1200",
        "payables_account": "2000",
        "output_vat_account": "2200",
        "input_vat_account": "1400",
        "bank_account": "1000",
        "journal_workflow": "review",
        "closed_period_policy": "block",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def _queries_for(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(queries)


@pytest.mark.parametrize("model", ["ledger", "accountingyear", "accountingperiod", "glaccount"])
def test_reference_lists_render_with_bounded_queries(admin_client, ledger, model):
    url = reverse(f"admin:ledger_sync_{model}_changelist")
    monthly_periods(ledger=ledger, year=2025, closed_months=(1, 2))
    GLAccountFactory.create_batch(3)
    few = _queries_for(admin_client, url)

    for gotransverse_id in (2, 3, 4):
        other = LedgerFactory(gotransverse_id=gotransverse_id)
        monthly_periods(ledger=other, year=2026, closed_months=(3,))
    GLAccountFactory.create_batch(30)
    many = _queries_for(admin_client, url)

    assert many == few


def test_period_list_shows_open_and_closed_badges(admin_client, ledger):
    monthly_periods(ledger=ledger, year=2026, closed_months=(1,))

    response = admin_client.get(reverse("admin:ledger_sync_accountingperiod_changelist"))

    body = response.content.decode()
    assert body.count(">CLOSED</span>") == 1
    assert body.count(">OPEN</span>") == 11


def test_period_list_filters_by_open(admin_client, ledger):
    monthly_periods(ledger=ledger, year=2026, closed_months=(1, 2))

    response = admin_client.get(
        reverse("admin:ledger_sync_accountingperiod_changelist") + "?is_open__exact=0"
    )

    assert [p.name for p in response.context["cl"].result_list] == ["Jan 2026", "Feb 2026"]


def test_gl_accounts_are_searchable_by_number_and_name(admin_client):
    sandbox_chart()
    url = reverse("admin:ledger_sync_glaccount_changelist")

    by_number = admin_client.get(url + "?q=2200").context["cl"].result_list
    by_name = admin_client.get(url + "?q=Gas").context["cl"].result_list

    assert [a.number for a in by_number] == ["2200"]
    assert sorted(a.number for a in by_name) == ["4002", "5002"]


def test_mirrored_record_page_is_read_only_with_pretty_raw_json(admin_client):
    account = GLAccountFactory(raw_json='{"id":501,"number":"7000","status":"ACTIVE"}')

    response = admin_client.get(reverse("admin:ledger_sync_glaccount_change", args=[account.pk]))

    body = response.content.decode()
    assert "&quot;number&quot;: &quot;7000&quot;" in body  # indented, HTML-escaped
    assert 'name="_save"' not in body


def test_settings_list_opens_the_single_settings_page(client, finance_lead):
    response = client.get(reverse("admin:ledger_sync_postingsettings_changelist"))

    assert response.status_code == 302
    assert response.url == SETTINGS_URL
    assert PostingSettings.objects.count() == 1


def test_finance_lead_changes_a_control_account(client, finance_lead, ledger):
    sandbox_chart()
    GLAccountFactory(number="1010", name="Bank - savings")  # ASSET, designation CASH
    PostingSettings.load()

    response = client.post(SETTINGS_URL, _form_data(bank_account="1010"))

    assert response.status_code == 302
    assert PostingSettings.load().bank_account == "1010"
    change = PostingSettingsChange.objects.get()
    assert change.changed_by == finance_lead
    assert change.changes == {"bank_account": ["1000", "1010"]}


def test_non_posting_control_account_is_refused_with_the_fix(client, finance_lead, ledger):
    sandbox_chart()
    PostingSettings.load()

    response = client.post(SETTINGS_URL, _form_data(receivables_account="4000"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["receivables_account"] == [
        "Receivables account 4000 is a non-posting (parent) account in the Gotransverse "
        "chart; choose a posting account such as 4001."
    ]
    assert PostingSettings.load().receivables_account == "1200"
    assert not PostingSettingsChange.objects.exists()


def test_settings_page_shows_where_closed_periods_land_and_the_history(
    client, finance_lead, ledger
):
    sandbox_chart()
    monthly_periods(ledger=ledger, year=2026, closed_months=(1, 2))
    PostingSettingsFactory(closed_period_policy="roll_forward")
    PostingSettingsChange.objects.create(
        changed_by=finance_lead,
        changed_at="2026-03-01T10:00:00Z",
        before={},
        after={},
        changes={"closed_period_policy": ["block", "roll_forward"]},
    )

    response = client.get(SETTINGS_URL)

    body = response.content.decode()
    assert body.count("posted into Mar 2026") == 2
    assert "closed_period_policy: block → roll_forward" in body
    assert "All control accounts are active posting accounts" in body


def test_user_without_change_permission_cannot_change_settings(client, ledger):
    sandbox_chart()
    PostingSettings.load()
    accountant = _staff("accountant", "view_postingsettings")
    client.force_login(accountant)

    page = client.get(SETTINGS_URL)
    post = client.post(SETTINGS_URL, _form_data(bank_account="1010"))

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert post.status_code == 403
    assert PostingSettings.load().bank_account == "1000"
    assert not PostingSettingsChange.objects.exists()


def test_user_without_any_permission_cannot_see_settings(client):
    client.force_login(_staff("clerk"))

    assert client.get(SETTINGS_URL).status_code == 403
    assert client.get(reverse("admin:ledger_sync_postingsettings_changelist")).status_code == 403


@pytest.mark.parametrize(("group", "can_change"), [("Accountant", False), ("Finance lead", True)])
def test_only_the_finance_lead_role_changes_posting_settings(client, ledger, group, can_change):
    from django.contrib.auth.models import Group

    from ledger_sync.services.roles import roles_ensure

    roles_ensure()
    sandbox_chart()
    GLAccountFactory(number="1010", name="Bank - savings")
    PostingSettings.load()
    user = _staff(group.lower().replace(" ", "."))
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)

    response = client.post(SETTINGS_URL, _form_data(bank_account="1010"))

    assert response.status_code == (302 if can_change else 403)
    assert PostingSettings.load().bank_account == ("1010" if can_change else "1000")
    assert client.get(SETTINGS_URL).status_code == 200  # both roles may look


def test_sync_now_action_queues_a_pass(
    admin_client, gotransverse_sandbox, django_capture_on_commit_callbacks
):
    from ledger_sync.models import Ledger, SyncRun

    ledger = LedgerFactory(gotransverse_id=1)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(
            reverse("admin:ledger_sync_ledger_changelist"),
            {"action": "sync_now", "_selected_action": [ledger.pk]},
        )

    assert response.status_code == 302
    assert len(callbacks) == 1
    run = SyncRun.objects.get()  # the test cluster runs queued tasks in-process
    assert (run.trigger, run.status) == ("admin", "succeeded")
    assert Ledger.objects.get().name == "ledger_sync sandbox ledger"


def test_settings_history_list_renders(client, finance_lead):
    PostingSettingsChange.objects.create(
        changed_by=finance_lead,
        changed_at="2026-03-01T10:00:00Z",
        before={"bank_account": "1000"},
        after={"bank_account": "6000"},
        changes={"bank_account": ["1000", "6000"]},
    )
    finance_lead.user_permissions.add(Permission.objects.get(codename="view_postingsettingschange"))

    response = client.get(reverse("admin:ledger_sync_postingsettingschange_changelist"))

    assert response.status_code == 200
    assert "bank_account: 1000 → 6000" in response.content.decode()


def test_gl_account_page_shows_its_change_history_as_a_diff(admin_client):
    from ledger_sync.models import RecordChange, SyncRun

    account = GLAccountFactory(gotransverse_id=777, number="7000")
    run = SyncRun.objects.create(
        system="gotransverse", trigger="schedule", started_at=timezone.now()
    )
    RecordChange.objects.create(
        system="gotransverse",
        entity="GLAccount",
        remote_id="777",
        sync_run=run,
        changed_at=timezone.now(),
        changes={"status": ["ACTIVE", "INACTIVE"]},
    )

    response = admin_client.get(reverse("admin:ledger_sync_glaccount_change", args=[account.pk]))

    body = response.content.decode()
    assert "<td><code>status</code></td><td><del>ACTIVE</del></td><td><ins>INACTIVE</ins>" in body
    assert reverse("admin:ledger_sync_syncrun_change", args=[run.pk]) in body


def test_failed_record_of_a_run_shows_its_raw_json_pretty_printed(admin_client):
    from ledger_sync.models import SyncRun, SyncRunError

    run = SyncRun.objects.create(
        system="gotransverse", trigger="schedule", started_at=timezone.now()
    )
    error = SyncRunError.objects.create(
        sync_run=run, entity="GLAccount", remote_id="9", message="bad", raw_json='{"id":9,"a":1}'
    )

    response = admin_client.get(reverse("admin:ledger_sync_syncrunerror_change", args=[error.pk]))

    assert '<pre style="white-space:pre-wrap;margin:0">{\n  &quot;id&quot;: 9,\n' in (
        response.content.decode()
    )
