"""Peers: partners that also serve TAXII 2.1 and sign every page, pulled with verification."""
