"""What tests and benchmarks share, never shipped in the wheel (setup.py packages only agent/,
collector/ and common/).

``peers`` starts the real peers on loopback (snmpd, snmpsim, NUT, Prometheus, Alertmanager,
PostgreSQL, ...; ``peers.fixtures`` is the pytest plugin), ``linkemu`` the link emulator in network
namespaces, ``collector`` a collector process and its config, ``devices`` SNMP device probing,
``synth`` synthetic evidence, ``judge`` scripted sites and worlds for the judge, ``web`` the status
page's fake verdicts and scenario.
"""
