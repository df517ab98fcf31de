"""The one settings root: environment (prefix ``ZTGW_``) over a TOML config file over defaults.

Only the composition root reads the environment; packages receive typed settings objects
derived from this one (``audit_settings()``, …).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from ztgw.audit.config import AuditSettings

CONFIG_NAME = "ztgw.toml"


def _config_file() -> Path | None:
    explicit = os.environ.get("ZTGW_CONFIG")
    if explicit:
        return Path(explicit)
    candidate = Path(os.environ.get("ZTGW_HOME", "./var")) / CONFIG_NAME
    return candidate if candidate.exists() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZTGW_", extra="forbid")

    home: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    issuer: str | None = Field(None, description="OIDC issuer URL; default http://HOST:PORT")
    data_audience: str = "urn:ztgw:data-api"
    access_token_ttl: int = Field(600, ge=30, le=86400, description="seconds")
    token_leeway: int = Field(30, ge=0, le=300, description="clock skew allowed, seconds")
    policy_bundle: Path | None = Field(None, description="default: HOME/policies/active")
    audit_synchronous: str = "NORMAL"
    max_request_body: int = 1024 * 1024
    max_response_body: int = 64 * 1024 * 1024
    upstream_connect_timeout: float = 3.0
    upstream_read_timeout: float = 15.0
    request_receive_timeout: float = 10.0
    demo_upstream_url: str = "http://127.0.0.1:8081"
    secret_pepper: SecretStr | None = Field(
        None, description="overrides HOME/keys/pepper (hex) for client-secret hashing"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file()
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    # --- derived paths -------------------------------------------------------------------
    @property
    def effective_issuer(self) -> str:
        return (self.issuer or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def db_path(self) -> Path:
        return self.home / "ztgw.db"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def bundle_path(self) -> Path:
        return self.policy_bundle or (self.home / "policies" / "active")

    def audit_settings(self) -> AuditSettings:
        return AuditSettings(
            db_path=self.home / "audit" / "audit.db", synchronous=self.audit_synchronous
        )

    def redacted(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("secret_pepper",):
            if data.get(key):
                data[key] = "********"
        data["effective_issuer"] = self.effective_issuer
        return data
