"""Signals the experiments app sends, for the apps above it to listen to.

``experiments`` may not import the apps that build on it (dependencies point one way), so it says
what happened and they listen: ``features`` turns these into webhook events. Sent by the lifecycle
services inside their transaction, after the change is saved; a receiver that records something
records it in the same transaction.

Keyword arguments: ``experiment`` (the saved ``Experiment``) and ``user`` (who did it, or None for
the scheduler and operators' commands).
"""

from django.dispatch import Signal

experiment_started = Signal()
experiment_stopped = Signal()
