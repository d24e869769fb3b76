from django.apps import AppConfig


class FeaturesConfig(AppConfig):
    name = "features"
    verbose_name = "Feature flags"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Cache invalidation only (see features/signals.py): no business logic hangs on signals.
        from simple_history.signals import pre_create_historical_record

        from experiments import approvals
        from features import signals
        from features.governance import services as governance
        from features.webhooks import events

        signals.connect()
        # Experiments' start, stop and ramp-up ask approvals through this hook (experiments/approvals.py).
        approvals.gate_register(governance.experiment_gate)
        # History rows written by an approved change request or a scheduled change name it.
        pre_create_historical_record.connect(
            governance.history_reason_fill, dispatch_uid="governance-history-reason", weak=False
        )
        # Stream servers hear of every change (features.sdk.streaming.notify): published through Redis.
        from features.sdk import cache
        from features.sdk.streaming import notify

        cache.on_change(notify.publish_change)
        # Experiments' lifecycle signals and change requests' become webhook events.
        events.connect()
