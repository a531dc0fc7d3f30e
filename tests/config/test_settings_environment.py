"""The settings CONTRACT.md fixes are read from the environment under exactly those names.

Each check imports the settings in a fresh interpreter with a controlled environment, because
`override_settings` would bypass the very reading of the environment that is under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from django.conf import settings

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "DATABASE_URL": [db["ENGINE"], str(db["NAME"])],
    **{name: getattr(s, name) for name in NAMES},
}))
"""
CONTRACT_NAMES = [
    "ATLAS_BASE_URL",
    "ATLAS_USERNAME",
    "ATLAS_PASSWORD",
    "ATLAS_TRIGGER_STATUS",
    "ATLAS_WEBHOOK_SECRET",
    "GOTRANSVERSE_BASE_URL",
    "GOTRANSVERSE_API_KEY",
    "GOTRANSVERSE_LEDGER_ID",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "LEDGER_ACCOUNT_RECEIVABLES",
    "LEDGER_ACCOUNT_PAYABLES",
    "LEDGER_ACCOUNT_OUTPUT_VAT",
    "LEDGER_ACCOUNT_INPUT_VAT",
    "LEDGER_ACCOUNT_BANK",
    "JOURNAL_WORKFLOW",
    "CLOSED_PERIOD_POLICY",
]


def _settings_in_fresh_process(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # No inherited variables: a developer's shell or a .env must not decide the outcome.
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(settings.BASE_DIR)),
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        **environment,
    }
    return subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", f"NAMES = {CONTRACT_NAMES!r}\n{PRINT_SETTINGS}"],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _read(environment: dict[str, str]) -> dict:
    result = _settings_in_fresh_process(environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_contract_settings_have_working_defaults_for_the_sandboxes():
    values = _read({})

    assert values["DATABASE_URL"] == [
        "django.db.backends.sqlite3",
        str(settings.BASE_DIR / "var" / "ledger_sync.sqlite3"),
    ]
    assert values["ATLAS_BASE_URL"] == "http://127.0.0.1:8101"
    assert values["ATLAS_TRIGGER_STATUS"] == ["Approved order by ETRM"]
    assert values["GOTRANSVERSE_BASE_URL"] == "http://127.0.0.1:8102"
    assert values["DEBUG"] is False
    assert values["JOURNAL_WORKFLOW"] == "review"
    assert values["CLOSED_PERIOD_POLICY"] == "block"


def test_every_contract_setting_is_read_under_its_exact_name(tmp_path):
    database = tmp_path / "contract_check.sqlite3"
    environment = {
        "DATABASE_URL": f"sqlite:///{database}",
        "ATLAS_BASE_URL": "https://atlas.example.test",
        "ATLAS_USERNAME": "erp-user",
        "ATLAS_PASSWORD": "erp-password",
        "ATLAS_TRIGGER_STATUS": "Approved order by ETRM,Forwarded to accounting",
        "ATLAS_WEBHOOK_SECRET": "a-webhook-secret-of-some-length",
        "GOTRANSVERSE_BASE_URL": "https://ledger.example.test",
        "GOTRANSVERSE_API_KEY": "ledger-key",
        "GOTRANSVERSE_LEDGER_ID": "42",
        "SECRET_KEY": "a-secret-key",
        "DEBUG": "true",
        "ALLOWED_HOSTS": "ledger.example.test,admin.example.test",
        "LEDGER_ACCOUNT_RECEIVABLES": "1210",
        "LEDGER_ACCOUNT_PAYABLES": "2010",
        "LEDGER_ACCOUNT_OUTPUT_VAT": "2210",
        "LEDGER_ACCOUNT_INPUT_VAT": "1410",
        "LEDGER_ACCOUNT_BANK": "1010",
        "JOURNAL_WORKFLOW": "auto",
        "CLOSED_PERIOD_POLICY": "roll_forward",
    }

    values = _read(environment)

    assert values.pop("DATABASE_URL") == [
        "django.db.backends.sqlite3",
        str(database),
    ]
    expected = {
        **environment,
        "ATLAS_TRIGGER_STATUS": ["Approved order by ETRM", "Forwarded to accounting"],
        "DEBUG": True,
        "ALLOWED_HOSTS": ["ledger.example.test", "admin.example.test"],
    }
    del expected["DATABASE_URL"]
    assert values == expected


def test_a_journal_workflow_the_pipeline_does_not_know_stops_the_start():
    # Anything but "review" would otherwise be posted without review (posting treats every
    # workflow other than review as auto): a typo must not skip the accountants.
    result = _settings_in_fresh_process({"JOURNAL_WORKFLOW": "Review"})

    assert result.returncode != 0
    assert "JOURNAL_WORKFLOW" in result.stderr
    assert "'Review'" in result.stderr
    assert "auto" in result.stderr and "review" in result.stderr


def test_a_closed_period_policy_the_pipeline_does_not_know_stops_the_start():
    result = _settings_in_fresh_process({"CLOSED_PERIOD_POLICY": "roll-forward"})

    assert result.returncode != 0
    assert "CLOSED_PERIOD_POLICY" in result.stderr
    assert "'roll-forward'" in result.stderr


def test_a_ledger_id_that_is_not_a_number_stops_the_start():
    # The AR Ledger's ids are int64 in every path; a name would otherwise only fail deep in
    # the first cycle, with a traceback instead of a refusal to start.
    result = _settings_in_fresh_process({"GOTRANSVERSE_LEDGER_ID": "ledger-one"})

    assert result.returncode != 0
    assert "GOTRANSVERSE_LEDGER_ID" in result.stderr
    assert "'ledger-one'" in result.stderr


def test_env_example_names_every_contract_setting():
    text = (settings.BASE_DIR / ".env.example").read_text()
    named = {
        line.lstrip("# ").split("=", 1)[0].strip() for line in text.splitlines() if "=" in line
    }

    assert {"DATABASE_URL", *CONTRACT_NAMES} <= named
