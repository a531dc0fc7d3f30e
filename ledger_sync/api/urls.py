from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from ledger_sync.api import views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Interactive docs from drf-spectacular-sidecar's bundled assets (no CDN).
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("webhooks/atlas/", views.AtlasWebhookView.as_view(), name="api-atlas-webhook"),
    path("payments/", views.PaymentsView.as_view(), name="api-payments"),
    path(
        "payments/<str:external_id>/",
        views.PaymentDetailView.as_view(),
        name="api-payment-detail",
    ),
    path("invoices/", views.InvoicesView.as_view(), name="api-invoices"),
    path(
        "invoices/<str:external_id>/",
        views.InvoiceDetailView.as_view(),
        name="api-invoice-detail",
    ),
]
