"""The SNMP layer every device and UPS probe shares (pysnmp 7, asyncio).

``settings`` is the ``snmp:`` config block, ``client`` the one engine and its
GET/walk, ``values`` the typed reading of replies, ``errors`` the failure
kinds counted in ``commune_snmp_errors_total``, ``oids`` the numeric OIDs,
``probe`` what every SNMP probe config shares.

Probes import the submodules (``commune_agent.snmp.client``); the names below
are for everyone else.
"""

from commune_agent.snmp.client import Device, SnmpClient, Table, snmp_client
from commune_agent.snmp.errors import ERRORS_METRIC, SnmpError, counting_errors
from commune_agent.snmp.settings import SnmpSettings

__all__ = ["ERRORS_METRIC", "Device", "SnmpClient", "SnmpError", "SnmpSettings", "Table", "counting_errors",
           "snmp_client"]
