"""Scheduled starts and stops: experiments_apply_schedules, its Celery task and its beat entry."""

import datetime as dt

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from experiments.models import Experiment
from experiments.services import experiment_start, experiments_apply_schedules
from experiments.tasks import experiments_run_schedules
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def statuses() -> dict[str, str]:
    return dict(Experiment.objects.values_list("key", "status"))


@pytest.mark.parametrize(
    ("status", "start_at", "stop_at", "expected_status", "started", "stopped"),
    [
        ("draft", NOW - MINUTE, None, "running", True, False),
        ("draft", NOW, None, "running", True, False),
        ("draft", NOW + MINUTE, None, "draft", False, False),
        ("draft", None, None, "draft", False, False),
        ("draft", NOW - 2 * MINUTE, NOW - MINUTE, "draft", False, False),
        ("running", None, NOW - MINUTE, "stopped", False, True),
        ("paused", None, NOW - MINUTE, "stopped", False, True),
        ("running", None, NOW + MINUTE, "running", False, False),
        ("stopped", NOW - 2 * MINUTE, NOW - MINUTE, "stopped", False, False),
        ("archived", NOW - 2 * MINUTE, NOW - MINUTE, "archived", False, False),
    ],
    ids=[
        "draft-due",
        "draft-due-now",
        "draft-future",
        "draft-unscheduled",
        "draft-window-passed",
        "running-due",
        "paused-due",
        "running-future",
        "stopped",
        "archived",
    ],
)
def test_apply_schedules__table__starts_and_stops_what_is_due(
    status, start_at, stop_at, expected_status, started, stopped
):
    ExperimentFactory(key="exp", status=status, scheduled_start_at=start_at, scheduled_stop_at=stop_at)
    assert experiments_apply_schedules(now=NOW) == (["exp"] if started else [], ["exp"] if stopped else [])
    assert statuses() == {"exp": expected_status}


def test_apply_schedules__stop__through_the_lifecycle_service():
    ExperimentFactory(key="exp", status="running", scheduled_stop_at=NOW - MINUTE)
    experiments_apply_schedules(now=NOW)
    experiment = Experiment.objects.get(key="exp")
    assert (experiment.decision_variant, experiment.decision_reason) == ("", "scheduled stop")
    assert experiment.stopped_at is not None and experiment.version == 2


def test_apply_schedules__start__through_the_lifecycle_service():
    ExperimentFactory(key="exp", layer="homepage", traffic_allocation=0.4, scheduled_start_at=NOW - MINUTE)
    experiments_apply_schedules(now=NOW)
    experiment = Experiment.objects.get(key="exp")
    assert experiment.status == "running" and experiment.started_at is not None
    assert experiment.layer_slice_start == 0.0


def test_apply_schedules__start_refused_layer_full__logged_skipped_others_started(caplog):
    # Given a layer already 80% taken, and two drafts due: one needing 50%, one needing 10%.
    holder = ExperimentFactory(key="holder", layer="homepage", traffic_allocation=0.8)
    experiment_start(experiment=holder, user=None)
    ExperimentFactory(
        key="too_big", layer="homepage", traffic_allocation=0.5, scheduled_start_at=NOW - 2 * MINUTE
    )
    ExperimentFactory(key="fits", layer="homepage", traffic_allocation=0.1, scheduled_start_at=NOW - MINUTE)
    # When the schedules run.
    started, stopped = experiments_apply_schedules(now=NOW)
    # Then the one that fits starts, the other stays a draft with the reason logged.
    assert (started, stopped) == (["fits"], [])
    assert statuses() == {"holder": "running", "too_big": "draft", "fits": "running"}
    assert "Scheduled start of too_big refused" in caplog.text


def test_apply_schedules__run_twice__second_run_does_nothing():
    ExperimentFactory(key="a", scheduled_start_at=NOW - MINUTE)
    ExperimentFactory(key="b", status="running", scheduled_stop_at=NOW - MINUTE)
    assert experiments_apply_schedules(now=NOW) == (["a"], ["b"])
    assert experiments_apply_schedules(now=NOW) == ([], [])


def test_apply_schedules__start_and_stop_due__started_then_stopped_in_later_run():
    ExperimentFactory(key="exp", scheduled_start_at=NOW - MINUTE, scheduled_stop_at=NOW + MINUTE)
    assert experiments_apply_schedules(now=NOW) == (["exp"], [])
    assert experiments_apply_schedules(now=NOW + 2 * MINUTE) == ([], ["exp"])
    assert statuses() == {"exp": "stopped"}


def test_experiments_run_schedules__task__applies_at_the_current_time():
    ExperimentFactory(key="exp", scheduled_start_at=timezone.now() - MINUTE)
    result = experiments_run_schedules.delay().get()
    assert result == {"started": ["exp"], "stopped": []}
    assert statuses() == {"exp": "running"}


def test_beat_schedule__migration__runs_the_task_every_minute():
    task = PeriodicTask.objects.get(task="experiments.tasks.experiments_run_schedules")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")
    assert experiments_run_schedules.time_limit and experiments_run_schedules.soft_time_limit
