"""Fixtures of the signing tests."""

from tests.agreement.conftest import partners  # noqa: F401 (the fixture, shared with tests/agreement)
