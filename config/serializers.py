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
