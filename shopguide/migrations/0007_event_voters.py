from django.db import migrations, models
from django.utils.crypto import salted_hmac

BATCH = 5000


def weigh_stored_events(apps, schema_editor):
    """Events stored before voters existed. Imported ones count as their file's session (or
    each row as its own, without one), as new imports do (``importing.imported_voter``).
    The API's were anybody's word, sessions included: together they count as one voter."""
    SearchEvent = apps.get_model("shopguide", "SearchEvent")
    SearchEvent.objects.filter(import_key__isnull=True).update(voter="before-shopper-tokens")
    imported = SearchEvent.objects.filter(import_key__isnull=False).only("pk", "session", "import_key")
    batch = []
    for event in imported.iterator(chunk_size=BATCH):
        purpose, value = ("import", event.session) if event.session else ("import-row", event.import_key)
        event.voter = salted_hmac(f"shopguide.{purpose}", value).hexdigest()[:32]
        batch.append(event)
        if len(batch) == BATCH:
            SearchEvent.objects.bulk_update(batch, ["voter"])
            batch = []
    SearchEvent.objects.bulk_update(batch, ["voter"])


class Migration(migrations.Migration):
    """Events get a voter (see shoppers.py); versions no longer keep their held-out queries'
    text."""

    dependencies = [
        ("shopguide", "0006_activation_and_cancelled_runs"),
    ]

    operations = [
        migrations.AddField(
            model_name="searchevent",
            name="voter",
            field=models.CharField(
                default="",
                help_text="Who the event is weighed as: a keyed hash of the shopper's network (see shoppers.py).",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(weigh_stored_events, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="searchevent",
            name="session",
            field=models.CharField(blank=True, help_text="The shopper's pseudonymous id.", max_length=64),
        ),
        migrations.RemoveField(
            model_name="recommendermodel",
            name="heldout_queries",
        ),
    ]
