"""A non-atomic migration that can be made to fail half-way.

It creates the table catalog_half_applied, then, when the environment has
SHOP_BREAK_MIGRATION=1, raises. Because the migration is not atomic, the
table stays while the migration is not recorded in django_migrations: the
half-applied state a cutover's rollback has to undo. A later migrate then
fails on the existing table until the database is restored.

Without SHOP_BREAK_MIGRATION the migration applies normally.
"""

import os

from django.db import migrations


def maybe_break(apps, schema_editor):
    if os.environ.get("SHOP_BREAK_MIGRATION") == "1":
        raise RuntimeError(
            "SHOP_BREAK_MIGRATION=1: failing after creating catalog_half_applied (migration catalog.0004_flaky)"
        )


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("catalog", "0003_seed_and_fill_sku"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE TABLE catalog_half_applied (id bigserial PRIMARY KEY, note text NOT NULL DEFAULT '')",
            "DROP TABLE catalog_half_applied",
        ),
        migrations.RunPython(maybe_break, migrations.RunPython.noop),
    ]
