"""django-q2 entry points: an id or a trigger in, one service call, nothing else.

Every task is idempotent: the ORM broker delivers at least once, so some will run twice.
"""


def sync_gotransverse_task(trigger: str = "schedule") -> int:
    """One Gotransverse reference-data pass for settings.GOTRANSVERSE_LEDGER_ID; the run's id.
    When a pass is already running this one is skipped (logged) and the running pass's id is
    returned."""
    import logging

    from django.conf import settings

    from ledger_sync.services.gotransverse_mirror import (
        GotransverseMirrorAlreadyRunning,
        gotransverse_mirror_run,
    )
    from ledger_sync.services.remote import gotransverse_client_from_settings

    try:
        run = gotransverse_mirror_run(
            client=gotransverse_client_from_settings(),
            ledger_id=settings.GOTRANSVERSE_LEDGER_ID,
            trigger=trigger,
        )
    except GotransverseMirrorAlreadyRunning as skipped:
        logging.getLogger(__name__).info(skipped.message)
        return int(skipped.details["running_run_id"])
    return run.pk


def sync_atlas_task(trigger: str = "schedule") -> int:
    """One full ATLAS mirror pass; the run's id. When a pass is already running this one is
    skipped (logged) and the running pass's id is returned."""
    import logging

    from ledger_sync.services.atlas_mirror import AtlasMirrorAlreadyRunning, atlas_mirror_run
    from ledger_sync.services.remote import atlas_client_from_settings

    try:
        run = atlas_mirror_run(client=atlas_client_from_settings(), trigger=trigger)
    except AtlasMirrorAlreadyRunning as skipped:
        logging.getLogger(__name__).info(skipped.message)
        return int(skipped.details["running_run_id"])
    return run.pk


def resync_atlas_records_task(
    entity: str, atlas_ids: list[int], trigger: str = "admin", user_id: int | None = None
) -> int:
    """Re-fetch chosen ATLAS records of one entity (the admin's "resync selected"); the run's id."""
    from django.contrib.auth import get_user_model

    from ledger_sync.services.atlas_mirror import atlas_mirror_records
    from ledger_sync.services.remote import atlas_client_from_settings

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    run = atlas_mirror_records(
        client=atlas_client_from_settings(),
        entity=entity,
        atlas_ids=atlas_ids,
        trigger=trigger,
        user=user,
    )
    return run.pk


def counterparty_write_back_task(mapping_ids: list[int]) -> int:
    """Write approved ERP codes to ATLAS as externalId (one batched Counterparty/Post); how many
    were written. Idempotent: already written mappings are skipped."""
    from ledger_sync.models import CounterpartyMapping
    from ledger_sync.services.counterparty_writeback import counterparty_mappings_write_back

    result = counterparty_mappings_write_back(
        mappings=CounterpartyMapping.objects.filter(pk__in=mapping_ids)
    )
    return result.written


def master_data_corrections_push_task(correction_ids: list[int]) -> int:
    """Push approved master-data corrections to ATLAS; how many were pushed. Idempotent."""
    from ledger_sync.models import MasterDataCorrection
    from ledger_sync.services.counterparty_writeback import master_data_corrections_push

    result = master_data_corrections_push(
        corrections=MasterDataCorrection.objects.filter(pk__in=correction_ids)
    )
    return result.written


def propose_matches_task() -> int:
    """Map counterparties by externalId and propose ERP parties for the rest; proposals made."""
    from ledger_sync.services.matching import counterparty_propose_matches

    return counterparty_propose_matches().proposals_created


# --- journals: posting, review, write-back, the whole cycle (issue 5) ---------------------------


def _user(user_id: int | None):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id).first() if user_id else None


def run_cycle_task(trigger: str = "schedule") -> dict:
    """One whole cycle (both mirrors, build, post, write back), recorded as a JobRun; its
    counts and problems."""
    from ledger_sync.services.job_runs import journal_cycle_scheduled

    job = journal_cycle_scheduled(trigger=trigger)
    return {
        "job_run": job.pk,
        "stages": job.result.get("stages", {}),
        "problems": job.problems,
        "errors": job.result.get("errors", []),
    }


def job_run_task(job_run_id: int) -> str:
    """Run a queued "Run now" request (ATLAS mirror or journal cycle); its final status.
    Idempotent: a second delivery finds it no longer queued and does nothing."""
    from ledger_sync.services.job_runs import job_run_execute

    return job_run_execute(job_run_id=job_run_id).status


def post_journals_task(order_sync_ids: list[int] | None = None) -> int:
    """Post (or create drafts of) every claimable journal, or only these orders'; how many
    were posted. Safe to run twice: each order is claimed and looked up before a re-send."""
    from ledger_sync.services.posting import journals_post

    return journals_post(actor="system:post_journals_task", order_sync_ids=order_sync_ids).posted


def approve_journals_task(journal_ids: list[int], user_id: int) -> int:
    """An accountant's approval (queued by the admin): post the drafts by reference."""
    from ledger_sync.models import Journal
    from ledger_sync.services.posting import journal_approve
    from ledger_sync.services.writeback import write_backs_run

    journals = list(Journal.objects.filter(pk__in=journal_ids))
    posted = journal_approve(journals=journals, user=_user(user_id)).posted
    # ATLAS learns the ERP code and the invoice now rather than at the next cycle.
    write_backs_run(order_sync_ids=[journal.order_sync_id for journal in journals])
    return posted


def reject_journal_task(journal_id: int, user_id: int, reason: str) -> str:
    """Delete the draft in the ledger and block the order with the reviewer's reason."""
    from ledger_sync.models import Journal
    from ledger_sync.services.journal_corrections import journal_reject

    journal = Journal.objects.get(pk=journal_id)
    if journal.status == Journal.Status.REJECTED:
        return journal.status  # a second delivery: already done
    return journal_reject(journal=journal, user=_user(user_id), reason=reason).status


def reverse_journal_task(journal_id: int, user_id: int, reason: str) -> str:
    """Post the reversing journal and send the order round again as a new revision."""
    from ledger_sync.models import Journal
    from ledger_sync.services.journal_corrections import journal_reverse

    journal = Journal.objects.get(pk=journal_id)
    if journal.status == Journal.Status.REVERSED:
        return journal.status  # a second delivery: already done
    return journal_reverse(journal=journal, user=_user(user_id), reason=reason).status


def retry_order_task(order_sync_id: int, user_id: int | None = None) -> int:
    """Retry a FAILED order now (backoff skipped); the reference is looked up first. The retry
    is recorded in the order's history under the user who asked (from the admin)."""
    from ledger_sync.models import OrderSync
    from ledger_sync.services.journal_corrections import order_retry
    from ledger_sync.services.posting import journals_post

    order_retry(
        order_sync=OrderSync.objects.get(pk=order_sync_id),
        user=_user(user_id),
        actor="system:retry_order_task",
    )
    return journals_post(actor="system:retry_order_task", order_sync_ids=[order_sync_id]).posted


def rebuild_order_task(order_sync_id: int, user_id: int | None = None) -> str:
    """Re-evaluate an order after its cause was fixed; its state afterwards."""
    from ledger_sync.models import OrderSync
    from ledger_sync.services.journals import order_rebuild
    from ledger_sync.services.order_states import actor_for

    user = _user(user_id)
    order_sync = OrderSync.objects.get(pk=order_sync_id)
    order_rebuild(
        order_sync=order_sync, actor=actor_for(user, default="system:rebuild_order_task"), user=user
    )
    order_sync.refresh_from_db()
    return order_sync.state


def write_back_task(order_sync_ids: list[int] | None = None) -> int:
    """Do the due write-backs to ATLAS (all, or these orders'); how many steps failed."""
    from ledger_sync.services.writeback import write_backs_run

    return len(write_backs_run(order_sync_ids=order_sync_ids).failed)


def inbound_delivery_process_task(delivery_id: int) -> str:
    """Process one stored ATLAS webhook delivery; its final state. Idempotent (claimed)."""
    from ledger_sync.services.inbound import inbound_delivery_process

    delivery = inbound_delivery_process(delivery_id=delivery_id)
    return delivery.state if delivery is not None else "missing"


def payment_confirmation_deliver_task(confirmation_id: int) -> str:
    """Write one confirmed payment to ATLAS (and settle its invoice); its state. Idempotent."""
    from ledger_sync.services.payments import payment_confirmation_deliver

    confirmation = payment_confirmation_deliver(confirmation_id=confirmation_id)
    return confirmation.state if confirmation is not None else "missing"


def payment_settlement_post_task(confirmation_id: int) -> str:
    """Post one accepted payment's settlement transaction to the AR Ledger; its ledger state.
    Idempotent: claimed, and a stored request is looked up in the ledger before a resend."""
    from ledger_sync.services.settlements import payment_settlement_post

    confirmation = payment_settlement_post(confirmation_id=confirmation_id)
    return confirmation.ledger_state if confirmation is not None else "missing"


def invoice_report_deliver_task(report_id: int) -> str:
    """Create the ERP's reported invoice in ATLAS; its state. Idempotent."""
    from ledger_sync.services.invoice_reports import invoice_report_deliver

    report = invoice_report_deliver(report_id=report_id)
    return report.state if report is not None else "missing"


def invoice_settlement_send_task(settlement_id: int) -> str:
    """Send isPaid=true for one settled invoice (the admin's retry); its state. Idempotent."""
    from ledger_sync.services.payments import invoice_settlement_send

    settlement = invoice_settlement_send(settlement_id=settlement_id)
    return settlement.state if settlement is not None else "missing"


def inbound_sweep_task(trigger: str = "schedule") -> dict:
    """Deliver inbound work that is due: webhooks whose task never ran or failed transiently,
    payments and invoices not yet in ATLAS, settlements to send. Counts per kind."""
    from ledger_sync.services.sweep import inbound_sweep

    return inbound_sweep().as_dict()


# --- the error queue and re-checks after a fix (issue 9) -------------------------------------


def problems_refresh_task(trigger: str = "schedule") -> dict:
    """Fold every problem source into the error queue; what changed per kind."""
    from ledger_sync.services.problems import problems_refresh

    return problems_refresh()


def orders_recheck_task(order_sync_ids: list[int], reason: str = "") -> dict:
    """Re-check these orders now that their cause may be fixed (queued by the fix); what the
    build and the sending did. Idempotent: orders no longer blocked or ready are skipped."""
    from ledger_sync.services.pipeline import orders_recheck

    return orders_recheck(order_sync_ids=order_sync_ids, reason=reason).as_dict()


def reconcile_task(trigger: str = "schedule", period: str = "") -> int:
    """One reconciliation of ATLAS, our journals and the AR Ledger; the run's id (also when it
    failed: the run records why)."""
    from ledger_sync.services.reconciliation import reconciliation_run

    return reconciliation_run(trigger=trigger, period=period or None).pk
