import pytest

from ledger_sync.models import PostingSettings, PostingSettingsChange
from ledger_sync.services.posting_settings import (
    PostingSettingsInvalid,
    posting_settings_problems,
    posting_settings_update,
)
from tests.factories.reference import GLAccountFactory, sandbox_chart

pytestmark = pytest.mark.django_db

CONTROL_FIELDS = [
    ("receivables_account", "Receivables account"),
    ("payables_account", "Payables account"),
    ("output_vat_account", "Output VAT account"),
    ("input_vat_account", "Input VAT account"),
    ("bank_account", "Bank account"),
]


@pytest.fixture
def chart():
    return sandbox_chart()


@pytest.fixture
def finance_lead():
    from tests.factories.parties import finance_lead as user_in_finance_lead_group

    return user_in_finance_lead_group(username="lead")


def test_an_accountant_cannot_change_the_posting_settings(chart):
    from django.core.exceptions import PermissionDenied

    from tests.factories.parties import accountant

    with pytest.raises(PermissionDenied):
        posting_settings_update(user=accountant(), bank_account="6000")
    with pytest.raises(PermissionDenied):
        posting_settings_update(user=None, bank_account="6000")

    assert PostingSettings.load().bank_account == "1000"
    assert not PostingSettingsChange.objects.exists()


def test_settings_are_created_from_the_environment_on_first_use(settings):
    settings.LEDGER_ACCOUNT_RECEIVABLES = "1210"
    settings.LEDGER_ACCOUNT_PAYABLES = "2010"
    settings.LEDGER_ACCOUNT_OUTPUT_VAT = "2210"
    settings.LEDGER_ACCOUNT_INPUT_VAT = "1410"
    settings.LEDGER_ACCOUNT_BANK = "1010"
    settings.JOURNAL_WORKFLOW = "auto"
    settings.CLOSED_PERIOD_POLICY = "roll_forward"

    row = PostingSettings.load()

    assert (
        row.pk,
        row.receivables_account,
        row.payables_account,
        row.output_vat_account,
        row.input_vat_account,
        row.bank_account,
        row.journal_workflow,
        row.closed_period_policy,
    ) == (1, "1210", "2010", "2210", "1410", "1010", "auto", "roll_forward")


def test_environment_is_read_only_once(settings):
    PostingSettings.load()
    settings.LEDGER_ACCOUNT_BANK = "9999"

    assert PostingSettings.load().bank_account == "1000"
    assert PostingSettings.objects.count() == 1


@pytest.mark.parametrize(("field", "label"), CONTROL_FIELDS)
def test_unknown_control_account_is_refused(chart, finance_lead, field, label):
    with pytest.raises(PostingSettingsInvalid) as error:
        posting_settings_update(user=finance_lead, **{field: "4099"})

    assert error.value.errors == {
        field: (
            f"{label} 4099 is not in the Gotransverse chart of accounts; create it in "
            "Gotransverse (then sync the reference data) or choose an existing account."
        )
    }
    assert PostingSettingsChange.objects.count() == 0


@pytest.mark.parametrize(("field", "label"), CONTROL_FIELDS)
def test_non_posting_control_account_is_refused(chart, finance_lead, field, label):
    with pytest.raises(PostingSettingsInvalid) as error:
        posting_settings_update(user=finance_lead, **{field: "4000"})

    assert error.value.errors[field] == (
        f"{label} 4000 is a non-posting (parent) account in the Gotransverse chart; "
        "choose a posting account such as 4001."
    )


@pytest.mark.parametrize(("field", "label"), CONTROL_FIELDS)
def test_inactive_control_account_is_refused(chart, finance_lead, field, label):
    GLAccountFactory(number="1300", status="INACTIVE")

    with pytest.raises(PostingSettingsInvalid) as error:
        posting_settings_update(user=finance_lead, **{field: "1300"})

    assert error.value.errors[field].startswith(f"{label} 1300 is INACTIVE")


# A second account of each control role (type, designation), beside the sandbox chart's.
ROLE_ACCOUNTS = {
    "receivables_account": ("ASSET", "ACCOUNTS_RECEIVABLE"),
    "payables_account": ("LIABILITY", "ACCOUNTS_PAYABLE"),
    "output_vat_account": ("LIABILITY", "TAX"),
    "input_vat_account": ("ASSET", "TAX"),
    "bank_account": ("ASSET", "CASH"),
    "default_revenue_account": ("REVENUE", "REVENUE"),
    "default_expense_account": ("EXPENSE", "EXPENSE"),
}


@pytest.mark.parametrize(("field", "label"), CONTROL_FIELDS)
def test_posting_control_account_is_saved_with_history(chart, finance_lead, field, label):
    account_type, designation = ROLE_ACCOUNTS[field]
    GLAccountFactory(number="7000", type=account_type, designation=designation)
    before = PostingSettings.load()
    old_value = getattr(before, field)

    row = posting_settings_update(user=finance_lead, **{field: " 7000 "})

    assert getattr(row, field) == "7000"
    assert row.updated_by == finance_lead
    assert getattr(PostingSettings.load(), field) == "7000"
    change = PostingSettingsChange.objects.get()
    assert change.changed_by == finance_lead
    assert change.changes == {field: [old_value, "7000"]}
    assert change.before[field] == old_value
    assert change.after[field] == "7000"


@pytest.mark.parametrize(
    ("field", "label", "number", "needs"),
    [
        ("receivables_account", "Receivables account", "2000", "designated ACCOUNTS_RECEIVABLE"),
        ("payables_account", "Payables account", "1200", "designated ACCOUNTS_PAYABLE"),
        ("output_vat_account", "Output VAT account", "2000", "designated TAX"),
        ("input_vat_account", "Input VAT account", "4001", "designated TAX"),
        ("bank_account", "Bank account", "6000", "designated CASH"),
        ("default_revenue_account", "Default revenue account", "5001", "of type REVENUE"),
        ("default_expense_account", "Default expense account", "4001", "of type EXPENSE"),
    ],
)
def test_an_account_of_the_wrong_role_is_refused(chart, finance_lead, field, label, number, needs):
    with pytest.raises(PostingSettingsInvalid) as error:
        posting_settings_update(user=finance_lead, **{field: number})

    message = error.value.errors[field]
    assert message.startswith(f"{label} {number} ({chart[number].name}) has type ")
    assert f"which needs an account {needs}" in message
    assert PostingSettingsChange.objects.count() == 0


def test_default_accounts_are_optional_and_recorded_with_history(chart, finance_lead):
    row = posting_settings_update(
        user=finance_lead, default_revenue_account="4010", default_expense_account="5010"
    )
    assert (row.default_revenue_account, row.default_expense_account) == ("4010", "5010")

    row = posting_settings_update(user=finance_lead, default_expense_account="")

    assert row.default_expense_account == ""
    assert [c.changes for c in PostingSettingsChange.objects.order_by("changed_at", "id")] == [
        {"default_revenue_account": ["", "4010"], "default_expense_account": ["", "5010"]},
        {"default_expense_account": ["5010", ""]},
    ]


def test_default_accounts_start_from_the_environment(settings):
    settings.LEDGER_ACCOUNT_DEFAULT_REVENUE = "4010"
    settings.LEDGER_ACCOUNT_DEFAULT_EXPENSE = "5010"

    row = PostingSettings.load()

    assert (row.default_revenue_account, row.default_expense_account) == ("4010", "5010")


def test_nothing_is_saved_when_one_change_is_invalid(chart, finance_lead):
    GLAccountFactory(number="1010", type="ASSET", designation="CASH")
    with pytest.raises(PostingSettingsInvalid) as error:
        posting_settings_update(
            user=finance_lead,
            bank_account="1010",
            payables_account="5000",
            journal_workflow="sometimes",
        )

    assert set(error.value.errors) == {"payables_account", "journal_workflow"}
    assert "use 'auto' or 'review'" in error.value.errors["journal_workflow"]
    assert PostingSettings.load().bank_account == "1000"
    assert PostingSettingsChange.objects.count() == 0


def test_policy_change_is_recorded(chart, finance_lead):
    posting_settings_update(
        user=finance_lead, journal_workflow="auto", closed_period_policy="roll_forward"
    )

    change = PostingSettingsChange.objects.get()
    assert change.changes == {
        "journal_workflow": ["review", "auto"],
        "closed_period_policy": ["block", "roll_forward"],
    }


def test_unknown_policy_is_refused(chart, finance_lead):
    with pytest.raises(PostingSettingsInvalid) as error:
        posting_settings_update(user=finance_lead, closed_period_policy="ignore")

    assert "use 'block' or 'roll_forward'" in error.value.errors["closed_period_policy"]


def test_unknown_setting_name_is_refused(chart, finance_lead):
    with pytest.raises(PostingSettingsInvalid) as error:
        posting_settings_update(user=finance_lead, receivable_account="1200")

    assert "receivable_account is not a posting setting" in error.value.message


def test_saving_the_same_values_writes_no_history(chart, finance_lead):
    posting_settings_update(user=finance_lead, bank_account="1000", journal_workflow="review")

    assert PostingSettingsChange.objects.count() == 0


def test_problems_show_a_control_account_that_went_bad_after_saving(chart):
    chart["2200"].is_posting_account = False
    chart["2200"].save()

    assert posting_settings_problems() == {
        "output_vat_account": (
            "Output VAT account 2200 is a non-posting (parent) account in the Gotransverse "
            "chart; choose a posting account."
        )
    }
