"""Back office for the ATLAS mirror: every mirrored record, read-only.

ATLAS is the source: nothing here is added, changed or deleted (the next pass would overwrite
it). Lists stay fast on 100,000 rows: related rows are joined (`list_select_related`), no
column runs a query per row, no full COUNT(*) beside the filtered one, and the counterparty
filter is a text box instead of a list of every counterparty. "Resync selected from ATLAS"
queues a task after the request's transaction commits; ATLAS is never called in the request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django_q.tasks import async_task

from ledger_sync.admin.display import counted, money, when
from ledger_sync.admin.mirror import change_history_table, raw_json_block
from ledger_sync.admin.readonly import ReadOnlyAdmin, ReadOnlyPermissions, SuperuserOnlyFields
from ledger_sync.models import (
    Counterparty,
    CounterpartyCustomFieldValue,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    Order,
    OrderItem,
    Payment,
    SyncState,
)
from ledger_sync.selectors.atlas import atlas_entity_of, atlas_record_errors, atlas_record_history

RESYNC_TASK = "ledger_sync.tasks.resync_atlas_records_task"
# Ids per queued resync task (one ATLAS read call each) and per action.
RESYNC_CHUNK = 500
RESYNC_MAX = 10_000
MIRROR_FIELDS = (
    "sync_state",
    "sync_error",
    "first_seen_at",
    "last_seen_at",
    "last_changed_at",
    "created_at",
    "updated_at",
)
_STATE_COLOURS = {SyncState.SYNCED: "#2e7d32", SyncState.INVALID: "#c62828"}


# --- filters -------------------------------------------------------------------------------------


class AtlasIdInputFilter(admin.SimpleListFilter):
    """A text box taking an ATLAS id: fast on any table size, unlike a list of every value."""

    template = "admin/ledger_sync/input_filter.html"
    lookup: str = ""
    placeholder = "ATLAS id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(**{self.lookup: int(value)})

    def choices(self, changelist: Any) -> Any:
        # The template needs the other query parameters to keep them when this box is sent.
        yield {
            "preserved": [
                (name, value)
                for name, value in changelist.params.items()
                if name != self.parameter_name
            ],
            "value": self.value() or "",
            "placeholder": self.placeholder,
        }


class CounterpartyIdFilter(AtlasIdInputFilter):
    title = "counterparty (ATLAS id)"
    parameter_name = "counterparty_atlas_id"
    lookup = "counterparty_atlas_id"


class ItemCounterpartyIdFilter(CounterpartyIdFilter):
    """Through the order: used by items, invoices and payments."""

    lookup = "order__counterparty_atlas_id"


class OrderIdFilter(AtlasIdInputFilter):
    title = "order (ATLAS id)"
    parameter_name = "order_atlas_id"
    lookup = "order_atlas_id"


class InvoiceIdFilter(AtlasIdInputFilter):
    title = "invoice (ATLAS id)"
    parameter_name = "invoice_atlas_id"
    lookup = "invoice_atlas_id"


class ErpCodeFilter(admin.SimpleListFilter):
    title = "ERP code"
    parameter_name = "has_erp_code"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Not yet processed (null)"), ("yes", "Written back")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "no":
            return queryset.filter(erp_code__isnull=True)
        if self.value() == "yes":
            return queryset.filter(erp_code__isnull=False)
        return queryset


# --- base ----------------------------------------------------------------------------------------


def _when_of(obj: Any, name: str) -> str:
    return when(getattr(obj, name))


def _money_of(obj: Any, name: str) -> Any:
    currency = getattr(obj, "currency", "") or ""
    if not currency:
        # Items, invoices and payments carry no currency of their own: their order's.
        order = getattr(obj, "order", None)
        currency = getattr(order, "currency", "") or ""
    return money(getattr(obj, name), currency)


def _readable_displays(admin_obj: Any, model: Any) -> dict[str, str]:
    """Field name -> the name of a display method (made on `admin_obj`) that shows it readably:
    datetimes through `when`, 2-decimal amounts through `money`."""
    readable = {}
    for field in model._meta.fields:
        if isinstance(field, models.DateTimeField):
            readable[field.name] = _readable_display(admin_obj, field, _when_of)
        elif isinstance(field, models.DecimalField) and field.decimal_places == 2:
            readable[field.name] = _readable_display(admin_obj, field, _money_of)
    return readable


def _readable_display(admin_obj: Any, field: Any, show: Any) -> str:
    """Give `admin_obj` a display method for `field` (named `<field>_shown`); its name."""

    def display(obj: Any) -> Any:
        return show(obj, field.name)

    name = f"{field.name}_shown"
    display.short_description = capfirst(field.verbose_name)  # type: ignore[attr-defined]
    display.admin_order_field = field.name  # type: ignore[attr-defined]
    setattr(admin_obj, name, display)
    return name


class AtlasMirrorAdmin(SuperuserOnlyFields, ReadOnlyAdmin):
    """Read-only admin of one mirrored ATLAS model.

    Dates and amounts read as an accountant writes them, in the list and on the record's page:
    each datetime field is shown through `display.when` (date only at 00:00, as ATLAS sends its
    dates) and each 2-decimal amount through `display.money` with the record's currency.
    """

    superuser_only_fields = ("raw_json_pretty",)

    def __init__(self, model: Any, admin_site: Any) -> None:
        super().__init__(model, admin_site)
        self._readable = _readable_displays(self, model)
        self.list_display = tuple(self._readable.get(n, n) for n in self.list_display)

    actions = ["resync_selected"]
    ordering = ("-atlas_id",)
    record_fields: tuple[str, ...] = ()
    # Search: a number is looked up exactly in the id columns (indexed, never cast to text),
    # references exactly, names by substring.
    id_search_fields: tuple[str, ...] = ("atlas_id",)
    exact_search_fields: tuple[str, ...] = ()
    text_search_fields: tuple[str, ...] = ()

    @property
    def search_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*self.id_search_fields, *self.exact_search_fields, *self.text_search_fields)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q()
        if term.isdigit() and len(term) <= 18:
            for name in self.id_search_fields:
                condition |= Q(**{name: int(term)})
        for name in self.exact_search_fields:
            condition |= Q(**{name: term})
        for name in self.text_search_fields:
            condition |= Q(**{f"{name}__icontains": term})
        if not condition:
            return queryset.none(), False
        return queryset.filter(condition), False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        shown = (
            "atlas_id",
            *self.record_fields,
            *MIRROR_FIELDS,
            "record_errors",
            "change_history",
            "raw_json_pretty",
        )
        return tuple(self._readable.get(name, name) for name in shown)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.get_fields(request, obj)

    @admin.display(description="Sync state", ordering="sync_state")
    def sync_state_badge(self, obj: Any) -> SafeString:
        colour = _STATE_COLOURS.get(obj.sync_state, "#ef6c00")
        return format_html(
            '<span style="color:{};font-weight:600">{}</span>',
            colour,
            obj.get_sync_state_display(),
        )

    @admin.display(description="Raw JSON (as ATLAS last sent it)")
    def raw_json_pretty(self, obj: Any) -> SafeString:
        return raw_json_block(obj.raw_json)

    @admin.display(description="Change history")
    def change_history(self, obj: Any) -> SafeString:
        return change_history_table(
            atlas_record_history(entity=atlas_entity_of(type(obj)), atlas_id=obj.atlas_id)
        )

    @admin.display(description="Latest failures")
    def record_errors(self, obj: Any) -> SafeString:
        errors = atlas_record_errors(entity=atlas_entity_of(type(obj)), atlas_id=obj.atlas_id)
        if not errors:
            return format_html("<em>{}</em>", "None")
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li>{} (<a href="{}">run {}</a>)</li>',
                (
                    (
                        error.message,
                        reverse("admin:ledger_sync_syncrun_change", args=[error.sync_run_id]),
                        error.sync_run_id,
                    )
                    for error in errors
                ),
            ),
        )

    @admin.action(description="Resync selected from ATLAS")
    def resync_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        atlas_ids = list(queryset.order_by().values_list("atlas_id", flat=True)[: RESYNC_MAX + 1])
        if len(atlas_ids) > RESYNC_MAX:
            self.message_user(
                request,
                f"At most {RESYNC_MAX:,} records can be resynced at once; run a full ATLAS "
                "mirror pass (python manage.py sync_atlas) instead.",
                messages.ERROR,
            )
            return
        entity = atlas_entity_of(self.model)
        user_id = request.user.pk
        chunks = [atlas_ids[i : i + RESYNC_CHUNK] for i in range(0, len(atlas_ids), RESYNC_CHUNK)]

        def enqueue() -> None:
            for chunk in chunks:
                async_task(
                    RESYNC_TASK,
                    entity,
                    chunk,
                    trigger="admin",
                    user_id=user_id,
                    task_name="Resync "
                    + counted(len(chunk), f"ATLAS {entity} record", f"ATLAS {entity} records"),
                )

        # Queued only once the request's transaction commits; ATLAS is read by the worker.
        transaction.on_commit(enqueue)
        self.message_user(
            request,
            "Queued a resync of "
            + counted(len(atlas_ids), f"{entity} record", f"{entity} records")
            + " from ATLAS; the result "
            "appears under Sync runs.",
            messages.SUCCESS,
        )


def _changelist_link(model_name: str, text: str, **params: Any) -> SafeString:
    url = reverse(f"admin:ledger_sync_{model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), text)


class ReadOnlyInline(ReadOnlyPermissions, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    # Foreign keys the rows show, read in the same query (as list_select_related on a list).
    select_related: tuple[str, ...] = ()

    def __init__(self, parent_model: Any, admin_site: Any) -> None:
        super().__init__(parent_model, admin_site)
        readable = _readable_displays(self, self.model)
        self.fields = tuple(readable.get(n, n) for n in self.fields or ())

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset.select_related(*self.select_related) if self.select_related else queryset


# --- custom fields -------------------------------------------------------------------------------


@admin.register(CustomFieldType)
class CustomFieldTypeAdmin(AtlasMirrorAdmin):
    list_display = ("atlas_id", "name", "sync_state_badge", "last_seen_at")
    list_filter = ("sync_state",)
    text_search_fields = ("name",)
    record_fields = ("name",)


@admin.register(CustomFieldDefinition)
class CustomFieldDefinitionAdmin(AtlasMirrorAdmin):
    list_display = (
        "atlas_id",
        "name",
        "field_type",
        "is_required",
        "counterparty_type_ids",
        "sync_state_badge",
    )
    list_filter = ("field_type", "is_required", "sync_state")
    text_search_fields = ("name",)
    record_fields = ("name", "field_type", "is_required", "counterparty_type_ids", "options")


# --- counterparties ------------------------------------------------------------------------------


class CustomFieldValueInline(ReadOnlyInline):
    model = CounterpartyCustomFieldValue
    fields = ("custom_field_atlas_id", "name", "definition", "value")
    show_change_link = False
    select_related = ("definition",)


@admin.register(Counterparty)
class CounterpartyAdmin(AtlasMirrorAdmin):
    list_display = (
        "atlas_id",
        "name",
        "legal_name",
        "external_id",
        "vat",
        "gl_account",
        "self_billing",
        "sync_state_badge",
    )
    list_filter = ("sync_state", "self_billing", "counterparty_type_id")
    exact_search_fields = ("external_id",)
    text_search_fields = ("name", "legal_name", "vat")
    record_fields = (
        "name",
        "legal_name",
        "external_id",
        "counterparty_type_id",
        "vat",
        "gl_account",
        "iban",
        "swift_bic",
        "self_billing",
        "orders_link",
    )
    inlines = (CustomFieldValueInline,)

    @admin.display(description="Orders")
    def orders_link(self, obj: Counterparty) -> SafeString:
        return _changelist_link(
            "order", "Orders of this counterparty", counterparty_atlas_id=obj.atlas_id
        )


# --- orders --------------------------------------------------------------------------------------


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fk_name = "order"
    fields = (
        "atlas_id",
        "description",
        "cashflow",
        "status",
        "net_amount",
        "vat_amount",
        "vat_rate",
        "gl_account",
        "sync_state",
    )
    select_related = ("order",)  # the currency of the amounts


class InvoiceInline(ReadOnlyInline):
    model = Invoice
    fk_name = "order"
    fields = (
        "atlas_id",
        "external_id",
        "invoice_number",
        "amount",
        "invoice_date",
        "is_paid",
        "sync_state",
    )
    select_related = ("order",)


class PaymentInline(ReadOnlyInline):
    model = Payment
    fk_name = "order"
    fields = ("atlas_id", "external_id", "invoice", "amount", "payment_date", "sync_state")
    select_related = ("invoice", "order")


@admin.register(Order)
class OrderAdmin(AtlasMirrorAdmin):
    list_display = (
        "atlas_id",
        "document_reference",
        "counterparty",
        "status",
        "erp_code",
        "total_amount",
        "sync_state_badge",
    )  # dates and period are on the order's page (1,280 px)
    list_select_related = ("counterparty",)
    list_filter = (
        "status",
        ErpCodeFilter,
        "currency",
        "sync_state",
        CounterpartyIdFilter,
    )
    id_search_fields = ("atlas_id", "counterparty_atlas_id")
    exact_search_fields = ("erp_code",)
    text_search_fields = ("document_reference", "counterparty__name")
    record_fields = (
        "counterparty",
        "counterparty_atlas_id",
        "status",
        "erp_code",
        "document_reference",
        "currency",
        "total_amount",
        "registration_date",
        "due_date",
        "period_from",
        "period_to",
    )
    inlines = (OrderItemInline, InvoiceInline, PaymentInline)


@admin.register(OrderItem)
class OrderItemAdmin(AtlasMirrorAdmin):
    list_display = (
        "atlas_id",
        "order_link",
        "description",
        "cashflow",
        "status",
        "net_amount",
        "gl_account",
        "sync_state_badge",
    )  # VAT, rate and volume are on the item's page (1,280 px)
    list_select_related = ("order",)
    list_filter = ("status", "cashflow", "sync_state", OrderIdFilter, ItemCounterpartyIdFilter)
    id_search_fields = ("atlas_id", "order_atlas_id", "deal_id")
    text_search_fields = ("description",)
    record_fields = (
        "order",
        "order_atlas_id",
        "deal_id",
        "description",
        "cashflow",
        "status",
        "net_amount",
        "vat_amount",
        "vat_rate",
        "volume",
        "volume_unit",
        "period_from",
        "period_to",
        "gl_account",
        "iban",
    )

    @admin.display(description="Order", ordering="order__atlas_id")
    def order_link(self, item: OrderItem) -> SafeString | str:
        # Not the foreign key itself: the admin never wraps a foreign-key cell, and the order's
        # name with its reference is too wide for 1,280 px on one line.
        if item.order is None:
            return f"ATLAS order {item.order_atlas_id} (not mirrored)"
        url = reverse("admin:ledger_sync_order_change", args=[item.order.pk])
        return format_html('<a href="{}">{}</a>', url, item.order)


class InvoicePaymentInline(ReadOnlyInline):
    model = Payment
    fk_name = "invoice"
    fields = ("atlas_id", "external_id", "amount", "payment_date", "sync_state")
    select_related = ("order",)  # the currency of the amounts


@admin.register(Invoice)
class InvoiceAdmin(AtlasMirrorAdmin):
    list_display = (
        "atlas_id",
        "external_id",
        "invoice_number",
        "order",
        "amount",
        "invoice_date",
        "is_paid",
        "sync_state_badge",
    )
    list_select_related = ("order",)
    list_filter = ("is_paid", "sync_state", OrderIdFilter, ItemCounterpartyIdFilter)
    id_search_fields = ("atlas_id", "order_atlas_id")
    exact_search_fields = ("external_id", "invoice_number")
    record_fields = (
        "order",
        "order_atlas_id",
        "external_id",
        "invoice_number",
        "amount",
        "invoice_date",
        "due_date",
        "is_paid",
    )
    inlines = (InvoicePaymentInline,)


@admin.register(Payment)
class PaymentAdmin(AtlasMirrorAdmin):
    list_display = (
        "atlas_id",
        "external_id",
        "invoice",
        "amount",
        "payment_date",
        "sync_state_badge",
    )
    list_select_related = ("invoice", "order")
    list_filter = ("sync_state", InvoiceIdFilter, OrderIdFilter, ItemCounterpartyIdFilter)
    id_search_fields = ("atlas_id", "invoice_atlas_id", "order_atlas_id")
    exact_search_fields = ("external_id",)
    record_fields = (
        "invoice",
        "invoice_atlas_id",
        "order",
        "order_atlas_id",
        "external_id",
        "amount",
        "payment_date",
    )
