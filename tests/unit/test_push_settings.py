"""Push configuration: the settings a provider needs, and clear errors from ``chatmq push`` and
``chatmq serve`` when they are missing or the service account is bad."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatmq.core.errors import ConfigError
from chatmq.core.settings import Settings
from chatmq.run.cli import app
from chatmq.run.cluster import CLUSTER_CONFIG, LocalCluster
from chatmq.services.push import provider_from_settings
from chatmq.services.push.webhook import WebhookProvider

runner = CliRunner()


def test_push_is_off_by_default_with_private_defaults() -> None:
    s = Settings.load()
    assert (s.push_provider, s.push_preview, s.push_group_events) == ("none", False, False)
    assert provider_from_settings(s) is None


def test_fcm_needs_credentials_and_webhook_a_url() -> None:
    with pytest.raises(ConfigError, match=r"push_provider = fcm needs fcm_credentials \(CHATMQ_FCM_CREDENTIALS\)"):
        Settings.load(push_provider="fcm")
    with pytest.raises(ConfigError, match=r"push_provider = webhook needs push_webhook_url"):
        Settings.load(push_provider="webhook")
    with pytest.raises(ConfigError, match="push_webhook_url"):
        Settings.load(push_provider="webhook", push_webhook_url="ftp://example.com/x")
    with pytest.raises(ConfigError, match="push_ttl"):
        Settings.load(push_ttl=-1)


def test_the_webhook_provider_comes_from_the_settings() -> None:
    s = Settings.load(push_provider="webhook", push_webhook_url="http://127.0.0.1:9/push")
    assert isinstance(provider_from_settings(s), WebhookProvider)


def test_the_webhook_secret_is_long_enough_and_never_shown() -> None:
    with pytest.raises(ConfigError, match="push_webhook_secret"):
        Settings.load(push_provider="webhook", push_webhook_url="http://127.0.0.1:9/push", push_webhook_secret="short")
    s = Settings.load(push_provider="webhook", push_webhook_url="http://127.0.0.1:9/push",
                      push_webhook_secret="a-long-enough-secret")
    assert "a-long-enough-secret" not in repr(s)
    assert s.push_webhook_secret is not None
    assert s.push_webhook_secret.get_secret_value() == "a-long-enough-secret"


def _cluster_env(tmp_path: Path, **push: str) -> dict[str, str]:
    return {"CHATMQ_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CHATMQ_MONGO_URL": "mongodb://127.0.0.1:1",
            "CHATMQ_DATA_DIR": str(tmp_path), "CHATMQ_JWT_SECRET": "k" * 40, "CHATMQ_CONFIG": "",
            **{f"CHATMQ_{k.upper()}": v for k, v in push.items()}}


def test_chatmq_push_without_a_provider_says_what_to_set(tmp_path: Path) -> None:
    result = runner.invoke(app, ["push"], env=_cluster_env(tmp_path, push_provider="none"))
    assert result.exit_code == 2
    assert "set push_provider (CHATMQ_PUSH_PROVIDER) to fcm or webhook" in result.output


def test_chatmq_push_with_an_unreadable_service_account_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    result = runner.invoke(app, ["push"], env=_cluster_env(tmp_path, push_provider="fcm",
                                                           fcm_credentials=str(missing)))
    assert result.exit_code == 2
    assert f"fcm_credentials {missing}: not a readable Firebase service-account JSON" in result.output


def test_chatmq_serve_with_a_file_that_is_no_service_account_says_so(tmp_path: Path) -> None:
    account = tmp_path / "account.json"
    account.write_text('{"type": "authorized_user", "client_id": "x", "refresh_token": "secret-refresh"}')
    result = runner.invoke(app, ["serve", "--data-dir", str(tmp_path / "data"), "--http-port", "0"],
                           env={"CHATMQ_CONFIG": "", "CHATMQ_PUSH_PROVIDER": "fcm",
                                "CHATMQ_FCM_CREDENTIALS": str(account)})
    assert result.exit_code == 1
    assert f"fcm_credentials {account}: not a readable Firebase service-account JSON" in result.output
    assert "secret-refresh" not in result.output


def test_a_local_cluster_runs_the_push_part_only_when_push_is_configured(tmp_path: Path) -> None:
    s = Settings.load(CLUSTER_CONFIG, kafka_bootstrap="127.0.0.1:9092", mongo_url="mongodb://127.0.0.1:1",
                      jwt_secret="s" * 40, data_dir=tmp_path)
    assert "push" not in {p.name for p in LocalCluster(s, data_dir=tmp_path)._plan()}
    env = {"CHATMQ_PUSH_PROVIDER": "webhook", "CHATMQ_PUSH_WEBHOOK_URL": "http://127.0.0.1:9/push"}
    plan = {p.name: p for p in LocalCluster(s, data_dir=tmp_path, env=env)._plan()}
    assert plan["push"].args == ["push"]
    assert plan["push"].env["CHATMQ_PUSH_WEBHOOK_URL"] == "http://127.0.0.1:9/push"
