"""Who may read what: operators' credentials, roles and scopes, and the gate in front of every route.

- ``roles``: the roles (national, province, auditor, metrics) and the
  ``Principal`` a request acts as, with its scope rules;
- ``tokens``: operator bearer tokens (hashed, shown once, expiring) and their cached verifier;
- ``proxy``: identities passed by a trusted single-sign-on proxy in headers;
- ``gate``: the ASGI middleware that authenticates every request and refuses
  by default (only health, ingest, static files and the optional public view are open);
- ``deps``: what routes declare to get the principal and to apply its scope.

See docs/architecture.md, "Access", for the model and why.
"""
