"""Data migration: seed a small catalog into an empty database, and give
every product without one a sku derived from its id."""

from decimal import Decimal

from django.db import migrations

SEED = {
    "Coffee": [("Espresso beans 1kg", Decimal("24.90")), ("Filter papers", Decimal("3.50"))],
    "Tea": [("Sencha 100g", Decimal("8.20"))],
}


def seed_catalog(apps, schema_editor):
    Category = apps.get_model("catalog", "Category")
    Product = apps.get_model("catalog", "Product")
    if Product.objects.exists():
        return
    for category_name, items in SEED.items():
        category, _ = Category.objects.get_or_create(name=category_name)
        for name, price in items:
            Product.objects.create(category=category, name=name, price=price)


def fill_sku(apps, schema_editor):
    Product = apps.get_model("catalog", "Product")
    for product in Product.objects.filter(sku__isnull=True).order_by("id"):
        product.sku = "SKU-%06d" % product.id
        product.save(update_fields=["sku"])


def clear_sku(apps, schema_editor):
    Product = apps.get_model("catalog", "Product")
    Product.objects.filter(sku__startswith="SKU-").update(sku=None)


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0002_product_sku"),
    ]

    operations = [
        migrations.RunPython(seed_catalog, migrations.RunPython.noop),
        migrations.RunPython(fill_sku, clear_sku),
    ]
