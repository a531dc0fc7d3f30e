from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness plus a real round trip to the database: 503 when it cannot answer."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        return JsonResponse(
            {"status": "unavailable", "database": {"ok": False, "error": type(error).__name__}},
            status=503,
        )
    return JsonResponse({"status": "ok", "database": {"ok": True, "vendor": connection.vendor}})
