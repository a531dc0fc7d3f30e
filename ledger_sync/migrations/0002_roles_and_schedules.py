"""The back-office roles (groups with their permissions) and the recurring schedules.

Both services are idempotent and are also run by `demo`; they use the live app registry on
purpose (see ledger_sync.services.roles), so this migration must stay a thin call.
"""

from django.db import migrations


def roles_and_schedules_ensure(apps, schema_editor):
    from ledger_sync.services.roles import roles_ensure
    from ledger_sync.services.schedules import schedules_ensure

    roles_ensure()
    schedules_ensure()


class Migration(migrations.Migration):
    dependencies = [
        ("ledger_sync", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_q", "__latest__"),
    ]

    operations = [
        migrations.RunPython(roles_and_schedules_ensure, migrations.RunPython.noop),
    ]
