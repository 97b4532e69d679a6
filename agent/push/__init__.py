"""Push results to the collector, in parts: ``token``, ``backoff``, ``request`` (one POST and its
``PushOutcome``), ``metrics``, ``pusher`` (the batch, the spool and the sending loop; its docstring
says how pushing works) and ``wiring`` (how ``commune-agent run`` sets it up). Import the part you need.
"""
