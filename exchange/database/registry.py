"""Imports every table so Base.metadata is complete (Alembic and tests use it)."""
from exchange.auth import models as auth_models  # noqa: F401
from exchange.database.core import Base
from exchange.intel import models as intel_models  # noqa: F401

metadata = Base.metadata
