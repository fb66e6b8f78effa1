"""Products get a stock-keeping unit; 0003 fills it in for existing rows."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="sku",
            field=models.CharField(blank=True, max_length=32, null=True, unique=True),
        ),
    ]
