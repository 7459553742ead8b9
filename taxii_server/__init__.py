"""The TAXII 2.1 protocol adapter: medallion's views over the exchange's store."""

from taxii_server.app import create_taxii_app

__all__ = ["create_taxii_app"]
