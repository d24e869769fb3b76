from django.urls import re_path

from features.config_file.views import ConfigExportView, ConfigImportView

# With or without the trailing slash: pipelines call these by hand, and a redirect would lose a POST's body.
urlpatterns = [
    re_path(r"^config/export/?$", ConfigExportView.as_view(), name="config-export"),
    re_path(r"^config/import/?$", ConfigImportView.as_view(), name="config-import"),
]
