"""The error queue (Problem), its refresh schedule, and the roles' right to work the queue.

The RunPython calls the idempotent services that 0002 calls (live app registry on purpose, see
ledger_sync.services.roles): they add the "Error queue refresh" schedule and give both groups
view/change on Problem; running them again changes nothing.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def roles_and_schedules_ensure(apps, schema_editor):
    from ledger_sync.services.roles import roles_ensure
    from ledger_sync.services.schedules import schedules_ensure

    roles_ensure()
    schedules_ensure()


class Migration(migrations.Migration):

    dependencies = [
        ('ledger_sync', '0002_roles_and_schedules'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_q", "__latest__"),
    ]

    operations = [
        migrations.CreateModel(
            name='Problem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('blocked_order', 'Blocked order'), ('failed_posting', 'Failed posting'), ('failed_write_back', 'Failed write-back to ATLAS'), ('failed_delivery', 'Failed webhook delivery'), ('failed_callback', 'Failed payment or invoice callback'), ('refused_request', 'Refused inbound request'), ('mirror_record_error', 'Mirror record error'), ('failed_task', 'Failed task'), ('reconciliation', 'Reconciliation difference')], max_length=32)),
                ('key', models.CharField(help_text='What makes two reports the same problem within its kind (e.g. order_sync:42).', max_length=255)),
                ('record_label', models.CharField(blank=True, help_text='The record the problem is about.', max_length=255, verbose_name='record')),
                ('message', models.TextField(help_text='What is wrong and what fixes it, in plain words.')),
                ('fix_url', models.CharField(blank=True, help_text='Admin page of the exact record that fixes it (never a search).', max_length=500, verbose_name='fix link')),
                ('details', models.JSONField(blank=True, default=dict, help_text='For administrators; never secrets or bodies.')),
                ('first_seen_at', models.DateTimeField(verbose_name='first seen')),
                ('last_seen_at', models.DateTimeField(db_index=True, verbose_name='last seen')),
                ('count', models.PositiveIntegerField(default=1, help_text='Times seen, repeats folded.')),
                ('status', models.CharField(choices=[('open', 'Open'), ('resolved', 'Resolved'), ('ignored', 'Ignored')], db_index=True, default='open', max_length=16)),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('note', models.TextField(blank=True, help_text='What was done or is planned.')),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('assignee', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='assigned_problems', to=settings.AUTH_USER_MODEL)),
                ('resolved_by', models.ForeignKey(blank=True, help_text='Empty with a resolved date: resolved automatically when the source recovered.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'problem',
                'verbose_name_plural': 'error queue',
                'ordering': ['-last_seen_at', '-id'],
                'indexes': [models.Index(fields=['status', '-last_seen_at'], name='problem_status_last_seen'), models.Index(fields=['kind', 'status'], name='problem_kind_status')],
                'constraints': [models.UniqueConstraint(fields=('kind', 'key'), name='problem_unique_kind_key')],
            },
        ),
        migrations.RunPython(roles_and_schedules_ensure, migrations.RunPython.noop),
    ]
