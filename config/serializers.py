"""Small serializer pieces shared by the apps' APIs."""

from rest_framework import serializers


class TagsField(serializers.ListField):
    """Tags as a plain list of strings, backed by django-taggit."""

    child = serializers.CharField(max_length=100)

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Labels to find things again.")
        super().__init__(**kwargs)

    def to_representation(self, data):
        if hasattr(data, "all"):
            return sorted(tag.name for tag in data.all())
        return super().to_representation(data)


class WholeItemSerializer(serializers.Serializer):
    """An item of a list that a write replaces whole (variants, metric links, prerequisites).

    DRF lets a PATCH (``partial=True``) skip the required fields and defaults of nested serializers
    too, so ``PATCH {"metrics": [{}]}`` would reach the service without a metric. A list is always
    replaced whole, so its items are checked whole: 400 naming the field, even in a PATCH.
    """

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not getattr(self.root, "partial", False):
            return attrs
        missing = {}
        for name, field in self.fields.items():
            if field.read_only or field.source in attrs:
                continue
            if field.required:
                missing[name] = [field.error_messages["required"]]
            elif field.default is not serializers.empty:
                attrs[field.source] = field.default() if callable(field.default) else field.default
        if missing:
            raise serializers.ValidationError(missing)
        return attrs
