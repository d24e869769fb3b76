from django.apps import AppConfig


class FeaturesConfig(AppConfig):
    name = "features"
    verbose_name = "Feature flags"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Cache invalidation only (see features/signals.py): no business logic hangs on signals.
        from features import signals

        signals.connect()
        # Stream servers hear of every change (features.streaming.notify): published through Redis.
        from features import config
        from features.streaming import notify

        config.on_change(notify.publish_change)
