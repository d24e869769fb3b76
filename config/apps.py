from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    """``django.contrib.admin`` with the platform's admin site (``config.admin.PlatformAdminSite``)."""

    default_site = "config.admin.PlatformAdminSite"
