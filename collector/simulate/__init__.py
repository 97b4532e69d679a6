"""The fleet simulator: thousands of simulated commune sites pushing real reports to a real collector.

``fleet`` decides what every site is and what happens to it (links, UPS,
devices, scripted incidents) and what the collector must conclude about it
(the ground truth); ``driver`` sends its rounds through the ingest API with
the wire format and a token per site; ``check`` compares the collector's
verdicts with the ground truth; ``cli`` is ``commune-collector simulate``.
"""
