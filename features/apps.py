from django.apps import AppConfig


class FeaturesConfig(AppConfig):
    name = "features"
    verbose_name = "Feature flags"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Cache invalidation only (see features/signals.py): no business logic hangs on signals.
        from features import signals
        from features.webhooks import events

        signals.connect()
        # Experiments' lifecycle signals become webhook events (experiments cannot import features).
        events.connect()
