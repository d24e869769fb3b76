"""Signals the experiments app sends, for the apps above it to listen to.

``experiments`` may not import the apps that build on it (dependencies point one way), so it says
what happened and they listen: ``features`` turns these into webhook events. Sent by the lifecycle
services once their transaction has committed (never for a change rolled back), so a receiver's work
adds nothing to the transaction that holds the experiment's row.

Keyword arguments: ``experiment`` (the saved ``Experiment``) and ``user`` (who did it, or None for
the scheduler and operators' commands).
"""

from django.dispatch import Signal

experiment_started = Signal()
experiment_stopped = Signal()
