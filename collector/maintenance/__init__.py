"""Maintenance windows: planned work that counts neither for nor against a commune.

- ``windows``: the declared window and its occurrences (once or recurring).
- ``service``: declaring, listing and cancelling, scoped by the operator's role.
- ``silences``: the windows mirrored as Alertmanager silences, for exactly their time.

The judge reads only ``windows`` (through ``judge.quiet``); see docs/architecture.md.
"""
