from django.db import migrations, models


class Migration(migrations.Migration):
    """Events get a voter (see shoppers.py); events stored before count by their session, or
    each as a voter of its own without one. Versions no longer keep their held-out queries'
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
        migrations.RunSQL(
            "UPDATE shopguide_searchevent SET voter = COALESCE(NULLIF(session, ''), 'event-' || id)",
            migrations.RunSQL.noop,
        ),
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
