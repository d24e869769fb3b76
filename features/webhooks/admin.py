"""Webhooks in the admin: subscriptions (with "send test" and "replace secret") and the delivery log."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from features.webhooks.models import DeliveryStatus, EventType, Webhook, WebhookDelivery
from features.webhooks.services import (
    delivery_retry,
    event_types_validate,
    webhook_secret_rotate,
    webhook_send_test,
    webhook_url_validate,
)

STATUS_COLOURS = {
    DeliveryStatus.DELIVERED: "#198754",
    DeliveryStatus.PENDING: "#6c757d",
    DeliveryStatus.FAILED: "#dc3545",
}


class WebhookForm(forms.ModelForm):
    url = forms.CharField(
        label="receiver URL",
        max_length=2000,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Where the events are POSTed, e.g. https://hooks.example.com/experiments or an "
        "internal service such as http://chat-bridge:8080/hook.",
    )
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="The events sent to this receiver.",
    )

    class Meta:
        model = Webhook
        fields = ["name", "url", "event_types", "enabled", "description"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            webhook_url_validate(url)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from None
        return url

    def clean_event_types(self) -> list[str]:
        event_types = list(self.cleaned_data["event_types"])
        try:
            event_types_validate(event_types)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["event_types"]) from None
        return event_types


def _badge(status: str) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px">{}</span>',
        STATUS_COLOURS.get(status, "#6c757d"),
        DeliveryStatus(status).label if status in DeliveryStatus.values else status,
    )


@admin.register(Webhook)
class WebhookAdmin(SimpleHistoryAdmin):
    form = WebhookForm
    list_display = ["name", "url", "events", "enabled", "last_delivery"]
    list_filter = ["enabled"]
    search_fields = ["name", "url", "description"]
    readonly_fields = ["created_at", "created_by"]
    actions = ["send_test", "rotate_secret"]

    @admin.display(description="events")
    def events(self, webhook: Webhook) -> str:
        return ", ".join(webhook.event_types or []) or "–"

    @admin.display(description="last delivery")
    def last_delivery(self, webhook: Webhook) -> str:
        delivery = webhook.deliveries.order_by("-created_at", "-id").first()
        if delivery is None:
            return "–"
        return format_html("{} {}", _badge(delivery.status), delivery.event_type)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        obj._history_user = request.user
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(
                request,
                f"Copy this signing secret for “{obj.name}” now; it will not be shown again (replace it "
                f"with the “Replace the secret” action if lost): {obj.secret}",
            )

    @admin.action(description="Send a test event", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset) -> None:
        for webhook in queryset:
            webhook_send_test(webhook=webhook, user=request.user)
        messages.success(
            request,
            f"Test event queued for {queryset.count()} webhook(s); see the delivery log for the answer.",
        )

    @admin.action(description="Replace the secret", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset) -> None:
        for webhook in queryset:
            secret = webhook_secret_rotate(webhook=webhook, user=request.user)
            messages.warning(request, f"New signing secret for “{webhook.name}”, shown this once: {secret}")

    # --- the change page's "Send test event" button ---------------------------------------------------
    def get_urls(self):
        return [
            path(
                "<path:object_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="features_webhook_send_test",
            ),
            *super().get_urls(),
        ]

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        webhook = get_object_or_404(Webhook, pk=object_id)
        if request.method != "POST" or not self.has_change_permission(request, webhook):
            raise PermissionDenied
        with transaction.atomic():
            webhook_send_test(webhook=webhook, user=request.user)
        messages.success(request, "Test event queued; its answer shows in the delivery log.")
        return HttpResponseRedirect(reverse("admin:features_webhook_change", args=[webhook.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["send_test_url"] = reverse("admin:features_webhook_send_test", args=[obj.pk])
            context["deliveries_url"] = (
                reverse("admin:features_webhookdelivery_changelist") + f"?webhook__id__exact={obj.pk}"
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The log: read-only, newest first; failed deliveries can be sent again."""

    list_display = [
        "created_at",
        "webhook",
        "event_type",
        "status_badge",
        "response_code",
        "attempts",
        "duration",
    ]
    list_filter = ["status", "event_type", "webhook"]
    list_select_related = ["webhook"]
    search_fields = ["event_id", "event_type", "webhook__name"]
    actions = ["send_again"]
    fields = [
        "webhook",
        "event_type",
        "event_id",
        "status",
        "attempts",
        "response_code",
        "response_body",
        "error",
        "duration_ms",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "body",
    ]
    readonly_fields = fields

    @admin.display(description="status", ordering="status")
    def status_badge(self, delivery: WebhookDelivery) -> str:
        return _badge(delivery.status)

    @admin.display(description="time", ordering="duration_ms")
    def duration(self, delivery: WebhookDelivery) -> str:
        return "–" if delivery.duration_ms is None else f"{delivery.duration_ms} ms"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Send again", permissions=["view"])
    def send_again(self, request: HttpRequest, queryset) -> None:
        if not request.user.has_perm("features.change_webhook"):
            raise PermissionDenied
        count = 0
        # Pending ones too: one left behind by a process that stopped mid-delivery would wait forever.
        for delivery in queryset:
            delivery_retry(delivery=delivery)
            count += 1
        messages.success(request, f"{count} deliver{'y' if count == 1 else 'ies'} queued again.")
