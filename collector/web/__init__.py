"""The status page served by the collector: national table, province, commune (see README.md)."""
