from __future__ import annotations

from tests.agreement.conftest import cli_env, partners

__all__ = ["cli_env", "partners"]
