from django.contrib import admin
from django.urls import include, path

from ledger_sync.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("ledger_sync.api.urls")),
]
