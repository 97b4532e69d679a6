"""One module per probe kind, each exposing ``SPEC``; ``base`` is what they share.

The registry that lists them is ``commune_agent.registry`` (apart from the
probes, so that a probe's imports never run through it).
"""
