"""The roles a credential can hold (no imports, so the CLI parser can offer them cheaply)."""

INTERNAL_ROLES = ("admin", "analyst")
