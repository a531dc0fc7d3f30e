"""Import the ERP party register from CSV or XLSX, the same way the admin's import does.

    python manage.py import_erp_parties integration/sandbox/data/erp_parties.csv [--dry-run]

Prints new / changed / unchanged / invalid counts and one line per invalid row; saves nothing
when any row is invalid (exit 1), so a half-imported register never happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tablib
from django.core.management.base import BaseCommand, CommandError

from ledger_sync.services.erp_parties import ErpPartyResource


class Command(BaseCommand):
    help = "Import the ERP party register (CSV or XLSX) with validation; --dry-run to preview."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="validate and report only")

    def handle(self, *args: Any, path: Path, dry_run: bool, **options: Any) -> None:
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        if path.suffix.lower() == ".xlsx":
            dataset = tablib.Dataset().load(path.read_bytes(), format="xlsx")
        else:
            dataset = tablib.Dataset().load(path.read_text(encoding="utf-8-sig"), format="csv")
        resource = ErpPartyResource()
        preview = resource.import_data(dataset, dry_run=True)
        totals = preview.totals
        self.stdout.write(
            f"new {totals['new']}, changed {totals['update']}, unchanged {totals['skip']}, "
            f"invalid {totals['invalid']}, errors {totals['error']}"
        )
        for row in preview.invalid_rows:
            for field, messages in row.error_dict.items():
                self.stdout.write(f"  row {row.number}: {field}: {' '.join(messages)}")
        for row_number, errors in preview.row_errors():
            for error in errors:
                self.stdout.write(f"  row {row_number}: {error.error}")
        if preview.has_validation_errors() or preview.has_errors():
            raise CommandError("Nothing imported: fix the rows above and run again.")
        if dry_run:
            self.stdout.write("Dry run: nothing saved.")
            return
        resource.import_data(dataset, dry_run=False)
        self.stdout.write(
            self.style.SUCCESS(f"Imported {totals['new'] + totals['update']} parties.")
        )
