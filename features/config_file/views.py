"""``GET /api/v1/config/export/`` and ``POST /api/v1/config/import/``: the commands, over the API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import parsers, permissions, renderers, status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from features.config_file.apply import ImportResult, config_import
from features.config_file.export import KINDS, config_export
from features.config_file.formats import DocumentUnreadable, document_dump, document_load
from features.config_file.plan import ConfigFileError

YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
MODELS = {
    "environments": "features.%s_environment",
    "metrics": "metrics.%s_metric",
    "experiments": "experiments.%s_experiment",
    "features": "features.%s_feature",
    "holdouts": "features.%s_holdout",
}


class YAMLRenderer(renderers.BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return document_dump(data, format="yaml").encode()


class YAMLParser(parsers.BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            return document_load(stream.read())
        except DocumentUnreadable as exc:
            raise ParseError(str(exc)) from None


class _YAMLParserX(YAMLParser):
    media_type = "application/x-yaml"


class _YAMLParserText(YAMLParser):
    media_type = "text/yaml"


class CanImportConfiguration(permissions.BasePermission):
    """An import may create and change objects of every kind (and with ``prune`` delete them): it
    needs those permissions on environments, metrics, experiments, flags and holdouts."""

    message = (
        "Importing a configuration needs the add and change permissions (and delete, with prune) on "
        "environments, metrics, experiments, feature flags and holdouts."
    )

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        actions = ["add", "change"] + (["delete"] if _flag(request, "prune") else [])
        return all(user.has_perm(model % action) for model in MODELS.values() for action in actions)


def _flag(request, name: str) -> bool:
    return str(request.query_params.get(name, "")).lower() in ("1", "true", "yes", "on")


def plan_body(result: ImportResult, *, applied: bool) -> dict[str, Any]:
    return {
        "applied": applied,
        "summary": result.plan.summary,
        "changes": [change.to_dict() for change in result.plan.changes],
        "held": list(result.held),
    }


DOCUMENT_EXAMPLE = OpenApiExample(
    "A small workspace",
    value={
        "version": 1,
        "environments": [
            {
                "key": "production",
                "name": "Production",
                "description": "",
                "position": 2,
                "cors_allowed_origins": "",
            }
        ],
        "metrics": [{"key": "purchase", "name": "Purchase", "type": "binomial", "event": "purchase"}],
        "experiments": [],
        "holdouts": [],
        "features": [
            {
                "key": "new_checkout",
                "name": "New checkout",
                "type": "boolean",
                "default_value": False,
                "environments": {
                    "production": {
                        "enabled": True,
                        "rules": [{"type": "rollout", "condition": {}, "value": True, "coverage": 0.2}],
                    }
                },
                "prerequisites": [],
                "tags": [],
            }
        ],
    },
)
PLAN_EXAMPLE = OpenApiExample(
    "One flag changed",
    value={
        "applied": False,
        "held": [],
        "summary": {"create": 0, "change": 1, "delete": 0},
        "changes": [
            {
                "kind": "feature",
                "key": "new_checkout",
                "action": "change",
                "fields": [{"field": "environments.production.enabled", "old": False, "new": True}],
            }
        ],
    },
    response_only=True,
)


class ConfigExportView(APIView):
    renderer_classes = [renderers.JSONRenderer, YAMLRenderer]
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="Export the configuration",
        description="Environments, metrics, experiments (with status, dates and variants) and flags with "
        "their rules per environment, as `manage.py export_config` writes them. JSON by default; "
        "`?format=yaml` or `Accept: application/yaml` for YAML.",
        responses={200: OpenApiTypes.OBJECT},
        examples=[OpenApiExample("A small workspace", value=DOCUMENT_EXAMPLE.value, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return Response(config_export())


class ConfigImportView(APIView):
    parser_classes = [parsers.JSONParser, YAMLParser, _YAMLParserX, _YAMLParserText]
    permission_classes = [CanImportConfiguration]

    @extend_schema(
        summary="Import a configuration",
        description="Makes the configuration match the document (JSON, or YAML with "
        "`Content-Type: application/yaml`), all or nothing, through the same checks as the admin. "
        "The answer lists each object created, changed (with the fields) or deleted; changes to "
        "environments that require approval become change requests, listed in `held` (202). `?dry_run=1` "
        "checks everything and writes nothing; `?prune=1` also deletes what the document does not "
        f"name. Sections: {', '.join(KINDS)}. A refused object answers 400 naming it.",
        parameters=[
            OpenApiParameter("dry_run", bool, description="Check and show the changes; write nothing."),
            OpenApiParameter("prune", bool, description="Delete objects the document does not name."),
        ],
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample("A small workspace", value=DOCUMENT_EXAMPLE.value, request_only=True),
            PLAN_EXAMPLE,
        ],
    )
    def post(self, request, *args, **kwargs):
        dry_run = _flag(request, "dry_run")
        try:
            result = config_import(
                request.data,
                user=request.user,
                dry_run=dry_run,
                prune=_flag(request, "prune"),
                hold_protected=True,
            )
        except ConfigFileError as exc:
            return Response(
                {"detail": f"Nothing was imported: {exc}", "errors": [exc.to_dict()]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        # Changes held for approval (environments that require it): 202, as the API's own writes.
        answer = status.HTTP_202_ACCEPTED if result.held and not dry_run else status.HTTP_200_OK
        return Response(plan_body(result, applied=not dry_run), status=answer)
