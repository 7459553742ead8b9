"""Secrets read from files (EXCHANGE_*_FILE): read, stripped, refused at once when unusable, and
never repeated in an error, a repr or the command's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.config import FILE_SETTINGS, Settings, SettingsFileError
from tests.support.cli import environment, run

SECRET = "file-secret-" + "s" * 40
DB_URL = "postgresql+psycopg://exchange:pa55word-in-a-file@db:5432/exchange"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("EXCHANGE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_values_come_from_the_files_stripped(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("EXCHANGE_SECRET_KEY_FILE", _write(tmp_path / "key", SECRET + "\n"))
    clean_env.setenv("EXCHANGE_DATABASE_URL_FILE", _write(tmp_path / "url", DB_URL + "\n"))
    clean_env.setenv("EXCHANGE_ENVIRONMENT", "production")
    settings = Settings()
    assert settings.secret_key == SECRET
    assert settings.database_url == DB_URL
    assert SECRET not in repr(settings) and "pa55word" not in repr(settings)


@pytest.mark.parametrize("name", FILE_SETTINGS)
def test_a_missing_file_fails_at_once_naming_the_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    clean_env.setenv(f"EXCHANGE_{name.upper()}_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsFileError, match="absent: cannot read it"):
        Settings()


def test_an_empty_file_or_a_directory_is_refused(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("EXCHANGE_SECRET_KEY_FILE", _write(tmp_path / "empty", "\n \n"))
    with pytest.raises(SettingsFileError, match="is empty"):
        Settings()
    clean_env.setenv("EXCHANGE_SECRET_KEY_FILE", str(tmp_path))
    with pytest.raises(SettingsFileError, match="cannot read it"):
        Settings()


def test_a_value_and_a_file_for_the_same_setting_are_refused(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("EXCHANGE_SECRET_KEY", "x" * 40)
    clean_env.setenv("EXCHANGE_SECRET_KEY_FILE", _write(tmp_path / "key", SECRET))
    with pytest.raises(SettingsFileError, match="not both"):
        Settings()


def test_the_command_fails_fast_and_never_prints_a_secret(tmp_path: Path) -> None:
    short = "tooshort-but-secret"
    env = environment(
        tmp_path / "data",
        EXCHANGE_ENVIRONMENT="production",
        EXCHANGE_SECRET_KEY_FILE=_write(tmp_path / "key", short),
        EXCHANGE_DATABASE_URL_FILE=_write(tmp_path / "url", DB_URL),
    )
    done = run(env, "collection", "list")
    assert done.returncode == 2
    assert "at least 32 characters" in done.stderr
    assert short not in done.stderr + done.stdout and "pa55word" not in done.stderr + done.stdout
    env["EXCHANGE_DATABASE_URL_FILE"] = str(tmp_path / "nowhere")
    done = run(env, "serve")
    assert done.returncode == 2 and "nowhere: cannot read it" in done.stderr


def test_a_replica_needs_postgresql_on_both_sides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EXCHANGE_DATABASE_REPLICA_URL", "postgresql+psycopg://r@127.0.0.1:5433/x")
    with pytest.raises(ValueError, match="needs a PostgreSQL EXCHANGE_DATABASE_URL"):
        Settings()
    clean_env.setenv("EXCHANGE_DATABASE_URL", "postgresql+psycopg://p@127.0.0.1:5432/x")
    clean_env.setenv("EXCHANGE_DATABASE_REPLICA_URL", "sqlite:///replica.db")
    with pytest.raises(ValueError, match="must be a PostgreSQL URL"):
        Settings()
