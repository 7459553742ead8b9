"""The kinds of feed (no imports, so the CLI parser can offer them cheaply)."""

KINDS = ("taxii21", "stix-bundle", "csv", "text", "misp")
