"""Analyst publishing: incidents from plain fields, raw bundles, revocation, new versions and
"have we seen this value?" lookups."""
