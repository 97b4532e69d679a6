"""Power sources, normalized: ``reading`` (the one view and its metrics), ``nut`` (the
upsd protocol client), ``config`` (what every power entry shares), ``section``
(the ``power:`` list of the agent's config, derived from the probe registry).
"""
