"""Prepare PostgreSQL for walbust: replica identity and publication.

Kept in a migration so every environment gets it with `manage.py migrate`, before walbust
first starts: walbust creates its replication slot on first start, and a slot only
decodes with a publication that existed when it was created.

REPLICA IDENTITY FULL makes PostgreSQL log the whole previous row of each UPDATE and
DELETE. rules.yaml needs it: category_posts_{category_id} clears the category a post left,
fragment keys use the previous author_id, and ignore_changes/changed compare the old and
new rows. Without it walbust only gets the primary key of the previous row.
"""

from django.conf import settings
from django.db import migrations

# Every table rules.yaml names. A table added to the rules later needs its own migration:
# ALTER TABLE ... REPLICA IDENTITY FULL; ALTER PUBLICATION ... ADD TABLE ...
MODELS = ["blog.Category", "blog.Post", "blog.Comment", settings.AUTH_USER_MODEL]


def _tables(apps):
    return [apps.get_model(label)._meta.db_table for label in MODELS]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    q = schema_editor.quote_name
    tables = ", ".join(q(t) for t in _tables(apps))
    for table in _tables(apps):
        schema_editor.execute(f"ALTER TABLE {q(table)} REPLICA IDENTITY FULL")
    schema_editor.execute(f"CREATE PUBLICATION {q(settings.WALBUST_PUBLICATION)} FOR TABLE {tables}")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    q = schema_editor.quote_name
    schema_editor.execute(f"DROP PUBLICATION IF EXISTS {q(settings.WALBUST_PUBLICATION)}")
    for table in _tables(apps):
        schema_editor.execute(f"ALTER TABLE {q(table)} REPLICA IDENTITY DEFAULT")


class Migration(migrations.Migration):
    dependencies = [
        ("blog", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
