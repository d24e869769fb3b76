"""Send again, every five minutes, webhook deliveries left pending past their time (django-celery-beat;
editable in the admin)."""

from django.db import migrations

from config.periodic_tasks import interval_task


class Migration(migrations.Migration):
    dependencies = [
        ("features", "0011_webhooks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        interval_task(
            name="Send stalled webhook deliveries again",
            task="features.tasks.webhooks_resend_stalled",
            every_minutes=5,
            description=(
                "Webhook deliveries still pending five minutes after their attempt was due (their "
                "process stopped, or the broker lost them) are sent again."
            ),
        )
    ]
