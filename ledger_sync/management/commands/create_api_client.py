"""python manage.py create_api_client <name> --permission payments [--permission invoices]

Creates an API client for the callback API and prints its token once (only its hash is kept).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger_sync.errors import ApplicationError
from ledger_sync.models import ApiClient
from ledger_sync.services.api_clients import api_client_create


class Command(BaseCommand):
    help = "Create an API client (ERP, bank connector) and print its token once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--permission",
            action="append",
            choices=ApiClient.Permission.values,
            default=[],
            help="payments and/or invoices; repeat for both.",
        )
        parser.add_argument("--notes", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["permission"]:
            raise CommandError("Give at least one --permission (payments, invoices).")
        try:
            issued = api_client_create(
                name=options["name"], permissions=options["permission"], notes=options["notes"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(
            f"API client {issued.client.name!r} created with {', '.join(options['permission'])}. "
            "The token below is shown once; store it in the client's secret store."
        )
        # The token alone on stdout, so a script can capture it.
        self.stdout.write(issued.token)
