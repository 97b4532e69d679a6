"""commune-collector: ingest, store, judge and roll up the evidence agents push."""

__version__ = "0.1.0"
