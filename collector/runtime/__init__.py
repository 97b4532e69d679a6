"""Wiring: what puts the domain packages together and runs them.

The app factory and its state (``app``, ``state``), the child processes
(``childproc``), the judge's service, process and proxy (``judge_service``,
``judge_process``) and the aggregator's process (``aggregator_process``). The
domain packages (``judge``, ``store``, ``api``, ``web``, ...) never import this
package; it imports them.
"""
