"""The catalog app: categories, products and orders."""

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Configuration of the catalog app."""

    name = "catalog"
    default_auto_field = "django.db.models.BigAutoField"
