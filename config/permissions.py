from rest_framework.permissions import DjangoModelPermissions


class ReadAuthenticatedWriteModelPermission(DjangoModelPermissions):
    """Reading needs a logged-in user; writing needs the model's Django permission.

    Custom actions that change an object (an experiment's `start`, `stop`, ...) need the model's
    *change* permission rather than *add*, which DRF would otherwise require for any POST; a view
    lists them in `change_actions`.
    """

    def has_permission(self, request, view):
        if getattr(view, "action", None) in getattr(view, "change_actions", ()):
            if not request.user or not request.user.is_authenticated:
                return False
            model = view.get_queryset().model
            return request.user.has_perm(f"{model._meta.app_label}.change_{model._meta.model_name}")
        return super().has_permission(request, view)
