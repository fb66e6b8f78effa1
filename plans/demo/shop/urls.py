"""URLs of the shop: a health check, one read path and one write path."""

from django.urls import path

from catalog import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("products/", views.products, name="products"),
    path("orders/", views.orders, name="orders"),
]
