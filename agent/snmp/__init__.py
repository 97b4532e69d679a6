"""The SNMP layer every device and UPS probe shares (pysnmp 7, asyncio).

``settings`` is the ``snmp:`` config block, ``client`` the one engine and its
GET/walk, ``values`` the typed reading of replies, ``errors`` the failure
kinds counted in ``commune_snmp_errors_total``, ``oids`` the numeric OIDs,
``probe`` what every SNMP probe config shares.

Probes import the submodules (``agent.snmp.client``), never this package's
names: the probe registry imports those probes, and this package's modules
import ``agent.probes.base``, so the registry is loaded first, here.
"""

import agent.probes  # noqa: F401  (see above: breaks the import cycle in one known order)
from agent.snmp.client import Device, SnmpClient, Table, snmp_client
from agent.snmp.errors import ERRORS_METRIC, SnmpError, counting_errors
from agent.snmp.settings import SnmpSettings

__all__ = ["ERRORS_METRIC", "Device", "SnmpClient", "SnmpError", "SnmpSettings", "Table", "counting_errors",
           "snmp_client"]
