from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    """The demo's caches are database tables (settings.CACHES): `migrate` makes them, so the
    documented manual path (migrate, load, serve) has no hidden step."""
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
