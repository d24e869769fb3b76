"""The embedded one-process mode: eager tasks whenever ClickHouse is embedded, the periodic schedules
run by the web process itself, and a local ``.env`` file."""

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.scheduler import scheduler_running, scheduler_start, scheduler_stop
from experiments.models import Experiment, ExperimentStatus
from tests.factories import ExperimentFactory

PRINT_SETTINGS = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
    "from django.conf import settings as s; "
    "print(s.CELERY_TASK_ALWAYS_EAGER, s.EMBEDDED_SCHEDULER, os.environ.get('CSRF_PROBE', '-'), s.CELERY_BROKER_URL)"
)
OWN_VARIABLES = (
    "REDIS_URL",
    "CLICKHOUSE_URL",
    "CELERY_",
    "EMBEDDED_SCHEDULER",
    "PLATFORM_ENV_FILE",
    "CSRF_PROBE",
)


def _settings(tmp_path, **env_overrides) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    env.setdefault("PLATFORM_ENV_FILE", str(tmp_path / "absent.env"))
    env.update(env_overrides)
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.slow  # starts Python processes of its own
@pytest.mark.parametrize(
    ("env", "eager", "scheduler", "broker"),
    [
        ({}, "True", "True", "memory://"),  # the embedded defaults
        ({"REDIS_URL": "redis://r:6379/0"}, "True", "True", "memory://"),  # a worker could not open chDB
        ({"CLICKHOUSE_URL": "http://ch:8123/experiments"}, "True", "True", "memory://"),  # no broker
        ({"REDIS_URL": "redis://r:6379/0", "CLICKHOUSE_URL": "http://ch:8123/x"}, "False", "False",
         "redis://r:6379/0"),
        ({"REDIS_URL": "redis://r:6379/0", "CLICKHOUSE_URL": "http://ch:8123/x", "EMBEDDED_SCHEDULER": "1"},
         "False", "True", "redis://r:6379/0"),
    ],
)  # fmt: skip
def test_settings__services_configured__eager_tasks_embedded_scheduler_and_broker(
    tmp_path, env, eager, scheduler, broker
):
    values = _settings(tmp_path, **env)
    assert (values[0], values[1], values[3]) == (eager, scheduler, broker)


@pytest.mark.slow  # starts Python processes of its own
def test_settings__dot_env_file__fills_unset_variables_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("CSRF_PROBE=from-file\nEMBEDDED_SCHEDULER=false\n")
    assert _settings(tmp_path, PLATFORM_ENV_FILE=str(env_file))[1:3] == ["False", "from-file"]
    assert _settings(tmp_path, PLATFORM_ENV_FILE=str(env_file), CSRF_PROBE="from-env")[2] == "from-env"


def test_scheduler_start__embedded_scheduler_off__starts_nothing(settings):
    settings.EMBEDDED_SCHEDULER = False
    assert scheduler_start() is False
    assert not scheduler_running()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_embedded_scheduler__scheduled_start_has_passed__the_process_starts_the_experiment():
    # Given a draft scheduled to start a minute ago, and the schedule runner (a periodic task from the
    # migrations, editable in the admin) due every second
    experiment = ExperimentFactory(scheduled_start_at=timezone.now() - dt.timedelta(minutes=1))
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    runner = PeriodicTask.objects.filter(task="experiments.tasks.experiments_run_schedules")
    runner.update(interval=every_second, last_run_at=timezone.now() - dt.timedelta(hours=1))
    PeriodicTask.objects.exclude(pk__in=runner.values("pk")).update(enabled=False)  # this test's only
    # When the process starts its embedded scheduler
    assert scheduler_start(force=True) is True
    try:
        assert scheduler_start(force=True) is False  # once per process
        deadline = time.monotonic() + 30
        status = experiment.status
        while time.monotonic() < deadline and status != ExperimentStatus.RUNNING:
            time.sleep(0.2)
            status = Experiment.objects.values_list("status", flat=True).get(pk=experiment.pk)
    finally:
        scheduler_stop()
    # Then the experiment was started by the schedule, with no worker and no beat process
    assert status == ExperimentStatus.RUNNING
    assert not scheduler_running()
