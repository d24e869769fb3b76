"""The writes of governance: approvals (``approvals``: proposing, approving, rejecting, applying) and
scheduled flag changes (``schedules``), with what they share (``common``). Imported from here."""

from features.governance.services.approvals import (
    change_request_approve,
    change_request_reject,
    experiment_gate,
    experiment_protected_environments,
    feature_delete,
    feature_delete_environments,
    feature_write,
)
from features.governance.services.common import (
    APPROVE_PERMISSION,
    StaleChangeRequest,
    history_reason,
    history_reason_fill,
    protected_environment_keys,
)
from features.governance.services.holdouts import holdout_write
from features.governance.services.schedules import (
    scheduled_change_cancel,
    scheduled_change_create,
    scheduled_change_validate,
    scheduled_changes_apply,
)

__all__ = [
    "APPROVE_PERMISSION",
    "StaleChangeRequest",
    "change_request_approve",
    "change_request_reject",
    "experiment_gate",
    "experiment_protected_environments",
    "feature_delete",
    "feature_delete_environments",
    "feature_write",
    "history_reason",
    "history_reason_fill",
    "holdout_write",
    "protected_environment_keys",
    "scheduled_change_cancel",
    "scheduled_change_create",
    "scheduled_change_validate",
    "scheduled_changes_apply",
]
