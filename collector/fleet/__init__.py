"""Fleet management from the center: enrollment tokens, configuration pulled by agents, agents' config state.

The agents sit behind NAT and carrier-grade NAT: nobody at the center can reach
them, but every agent already holds an authenticated channel to the collector.
So the center manages the fleet through that channel, agent-initiated only:

- ``enroll``: an operator's enrollment token (scoped, expiring, limited uses)
  is exchanged by the agent for the site's own token (``POST /api/v1/enroll``).
- ``desired``: each site's desired agent config, generated from the inventory
  and the profile exactly as ``commune-collector agent-config`` does, versioned
  by a content hash (``GET /api/v1/agent-config``, ETag / If-None-Match).
- ``tracker``: every report says which config version the agent applied and
  any apply error; two instances pushing as one site are flagged.
"""
