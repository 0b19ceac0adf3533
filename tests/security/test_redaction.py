"""The redaction every log line goes through (the end-to-end search is test_no_secrets_in_logs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mlpipeline.logs import configure_logging, redact, register_secret
from mlpipeline.settings import Settings


def test_url_credentials_are_redacted_wherever_they_appear() -> None:
    assert redact("at http://u:p4ss@host:5000/api") == "at http://***@host:5000/api"
    assert redact("postgresql+psycopg2://user:pw@db/x and iris://a:b@c:1972/USER") == (
        "postgresql+psycopg2://***@db/x and iris://***@c:1972/USER"
    )
    assert redact("http://user:p@ss@host/x") == "http://***@host/x", "an unencoded @ in the password"
    assert redact("'API request to http://u:pw@h/api failed'") == "'API request to http://***@h/api failed'"
    assert redact("http://host:5000/api, mail me@example.org") == "http://host:5000/api, mail me@example.org"


def test_registered_secrets_are_redacted_as_whole_tokens_only() -> None:
    register_secret("Tok3n/with+chars")
    register_secret("postgres")
    register_secret("abc")  # too short to be worth hiding: ignored
    assert redact("key Tok3n/with+chars!") == "key ***!"
    assert redact("key=Tok3n%2Fwith%2Bchars") == "key=***"
    assert redact("password postgres for postgresql://x") == "password *** for postgresql://x"
    assert redact("abc") == "abc"


def test_settings_name_every_secret_they_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-secret-value")
    settings = Settings(
        featurestore_url="postgresql+psycopg2://u:store%21pw@db/x",
        mlflow_tracking_uri="http://u:track-pw@mlflow:5000",
        api_key="the-api-key",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    assert set(settings.secret_values()) >= {
        "the-api-key",
        "store%21pw",
        "store!pw",
        "track-pw",
        "aws-secret-value",
        "mlflow-secret-value",
    }


def test_the_json_log_and_stderr_are_redacted_tracebacks_included(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_secret("Registered-Secret-42")
    path = configure_logging("INFO", tmp_path, stderr_level="DEBUG")
    assert path is not None
    log = logging.getLogger("mlpipeline.test_redaction")
    try:
        raise RuntimeError("API request to http://user:Url-Secret-7@127.0.0.1:1/x failed")
    except RuntimeError:
        log.error(
            "failed with Registered-Secret-42", exc_info=True, extra={"detail": "http://a:Url-Secret-7@h"}
        )
    for handler in logging.getLogger("mlpipeline").handlers:
        handler.flush()
    written = path.read_text(encoding="utf-8")
    record = json.loads(written.splitlines()[-1])
    assert "RuntimeError" in record["exc_info"]
    err = capsys.readouterr().err
    for text in (written, err):
        assert "Url-Secret-7" not in text
        assert "Registered-Secret-42" not in text
        assert "***@127.0.0.1" in text
    configure_logging("INFO", None, stderr=False)
