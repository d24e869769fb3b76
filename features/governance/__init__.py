"""Governance of flags and experiments: change requests (approvals) and scheduled flag changes.

- ``models``: ``ChangeRequest`` and ``ScheduledChange`` (registered with the features app).
- ``state``: what a flag or an experiment serves, as plain data, and the diff between two states.
- ``services``: proposing (a write held for approval), approving, rejecting, applying; scheduled
  changes and their runner.
- ``signals``: ``change_request_opened|approved|rejected|applied`` and ``scheduled_change_fired``,
  sent once the transaction commits, for webhooks and anything else that wants to know.
- ``serializers``, ``views``, ``admin``: the edges.
"""
