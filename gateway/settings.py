"""The one settings root: environment (prefix ``ZTGW_``) over a TOML config file over defaults.

Only the composition root reads the environment; packages receive typed settings objects
derived from this one (``audit_settings()``, …).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ztgw.audit.config import AuditSettings

from .state.redis_client import StateSettings

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
    audit_fsync: str = Field("always", description="spool fsync: always (each batch), interval, never")
    audit_fsync_interval: float = Field(0.2, gt=0, le=10, description="seconds, for audit_fsync=interval")
    audit_spool_quota_mb: int = Field(2048, ge=1, description="a fuller spool refuses access (503)")
    audit_batch_delay: float = Field(0.05, ge=0, le=1, description="max delay of 一般 events, s")
    audit_daemon: bool = Field(
        False, description="run the audit writer in its own process even with one worker")
    audit_socket: Path | None = Field(
        None, description="internal: set by `ztgw serve --workers N` for its workers (audit daemon)")
    audit_sinks: list[str] = Field(["store"], description="store, jsonl, elasticsearch")
    audit_jsonl_path: Path | None = None
    audit_es_url: str | None = None
    audit_es_api_key: SecretStr | None = None
    audit_es_ca_certs: Path | None = None
    audit_witness_dirs: list[Path] = Field([], description="copies of the signed checkpoints")
    audit_checkpoint_seconds: float = Field(5.0, gt=0, le=3600)
    audit_checkpoint_every: int = Field(10_000, ge=1)
    audit_checkpoint_events: bool = Field(False, description="also ship each checkpoint as an event")
    max_request_body: int = 1024 * 1024
    max_response_body: int = 64 * 1024 * 1024
    upstream_connect_timeout: float = 3.0
    upstream_read_timeout: float = 15.0
    request_receive_timeout: float = 10.0
    upstream_breaker_failures: int = Field(5, ge=1, description="consecutive failures opening the circuit")
    upstream_breaker_reset: float = Field(10.0, gt=0, description="seconds before a half-open probe")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed")
    network_zones: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "loopback": ["127.0.0.0/8", "::1/128"],
            "government": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        },
        description="zone name -> CIDRs; the policy engine sees the zone of the client address",
    )
    rate_limits: list[dict[str, Any]] = Field(
        default_factory=list,
        description='e.g. [{client = "*", dataset = "*", rate = 50, burst = 100}]',
    )
    data_plane_passthrough: bool = Field(
        False, description="BENCHMARKS ONLY: proxy without authentication, policy, masking, audit")
    federated_issuers: list[dict[str, Any]] = Field(
        [], description="bearer tokens of other identity platforms (docs/dataplane.md, federation)")
    fail_open_datasets: list[str] = Field(
        [], description="一般 datasets still served when the audit trail is unavailable (never 重要/核心)")
    tls_certfile: Path | None = Field(None, description="serve HTTPS with this certificate (PEM)")
    tls_keyfile: Path | None = Field(None, description="the certificate's private key (PEM)")
    tls_client_ca: Path | None = Field(
        None, description="CA bundle for client certificates (mTLS); a verified one may identify a client")
    client_certificates: dict[str, str] = Field(
        {}, description="client certificate SHA-256 (base64url, RFC 8705 x5t#S256) → client id")
    device_attesters: dict[str, Path] = Field(
        {}, description="device-trust services whose SM2-signed X-Device-Posture statements "
        "set the policy environment's device (name → PEM public key file; docs/dataplane.md)")
    otel_endpoint: str | None = Field(None, description="OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces")
    otel_service_name: str = "ztgw"
    otel_export_delay: float = Field(1.0, gt=0, le=60, description="seconds between span batches")
    demo_upstream_url: str = "http://127.0.0.1:8081"
    secret_pepper: SecretStr | None = Field(
        None, description="overrides HOME/keys/pepper (hex) for client-secret hashing"
    )
    # --- policy engine (issue 5; gateway/policy_runtime.py) --------------------------------
    policy_require_signature: bool = Field(
        False, description="refuse a policy bundle without a valid SM2 signature (at start and reload)"
    )
    policy_trusted_keys: list[Path] = Field(
        default_factory=list,
        description="SM2 public keys (PEM) trusted to sign bundles; default HOME/keys/policy-signing.pub.pem",
    )
    policy_shadow_bundle: Path | None = Field(
        None, description="candidate bundle decided next to the active one; differences are audited"
    )
    policy_reload_interval: float = Field(
        0.25, ge=0.05, le=60, description="seconds between checks of the bundle for changes"
    )
    policy_redis_url: SecretStr | None = Field(
        None, description="redis://… : publish/receive policy-change notices across replicas"
    )

    # --- identity (issue 4) ---------------------------------------------------------------
    directory_url: SecretStr | None = Field(
        None, description="postgresql+psycopg://… for the directory (default: SQLite HOME/ztgw.db)")
    session_idle_timeout: int = Field(1800, ge=60, le=86400, description="SSO idle timeout, s")
    session_max_age: int = Field(8 * 3600, ge=300, le=30 * 86400,
                                 description="SSO absolute timeout, s")
    access_token_alg: str = Field("ES256", pattern=r"^(ES256|RS256|SM2SM3|SM2)$",
                                  description="JWS alg of access tokens (SM2 = SM2SM3)")
    refresh_token_ttl: int = Field(8 * 3600, ge=300, le=90 * 86400, description="seconds")
    key_publish_delay: int = Field(
        300, ge=0, le=7 * 86400,
        description="`ztgw keys rotate`: a new key is in the JWKS this long before it signs, s")
    password_iterations: int = Field(600_000, ge=100_000, le=10_000_000,
                                     description="PBKDF2-HMAC-SM3 iterations for new verifiers")
    cert_login_ca: Path | None = Field(None, description="PEM CA bundle for SM2 certificate login")
    federation_issuer: str | None = Field(None, description="upstream OIDC provider (issuer URL)")
    federation_client_id: str | None = None
    federation_client_secret: SecretStr | None = None
    federation_name: str = Field("province", description="short name of the upstream provider")
    federation_title: str = Field("省统一身份认证平台", description="shown on the login page")
    federation_scope: str = Field("openid profile", description="scopes asked of the upstream")
    # --- detection, response, scanners (issue 10; scanners/) -----------------------------
    detect_enabled: bool = Field(True, description="run the detection engine over the audit trail")
    detect_rules_dir: Path | None = Field(None, description="Sigma rules folder; default: the bundled rules")
    detect_poll_interval: float = Field(0.5, gt=0, le=60, description="seconds between audit-store reads")
    detect_dedup_window: float = Field(300.0, ge=0, le=86400, description="one alert per group per window, s")
    detect_responses: bool = Field(False, description="take automatic responses (switch on for drills)")
    detect_response_plan: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="rule id or category -> [{action, ttl, value}] overrides")
    detect_thresholds: dict[str, float] = Field(
        default_factory=dict, description="overrides of ztgw.scanners.stateful.Thresholds fields")
    detect_allowlist_ips: list[str] = Field(default_factory=list, description="never blocked automatically")
    scan_allowed_hosts: list[str] = Field(
        default_factory=list, description="hosts besides loopback that scans and drills may target")
    pii_sample_rate: float = Field(0.05, ge=0, le=1, description="share of upstream answers sampled "
                                   "for personal data (ztgw scan pii --sampled); 0 switches it off")
    pii_sample_interval: float = Field(1.0, ge=0, le=3600, description="at most one sample per dataset "
                                       "per this many seconds")
    pii_sample_max_kb: int = Field(64, ge=1, le=4096, description="KiB of each sampled answer scanned")
    # --- scale-out (issue 11; gateway/state/, gateway/migrations/) --------------------------
    redis_url: SecretStr | None = Field(
        None, description="redis://… : rate limits, daily quotas and change notices shared by replicas "
                          "(also the policy notices unless policy_redis_url is set)")
    redis_fail_open: bool = Field(
        False, description="Redis unreachable: false = refuse with 503 (fail closed), "
                           "true = fall back to per-replica limits")
    redis_timeout: float = Field(0.25, gt=0, le=5, description="seconds per Redis command on a request")
    redis_key_prefix: str = Field("ztgw:", pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                                  description="namespace of ztgw's keys and channels in Redis")

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if self.policy_redis_url is None and self.redis_url is not None:
            self.policy_redis_url = self.redis_url
        return self

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
        scheme = "https" if self.tls_certfile is not None else "http"
        return (self.issuer or f"{scheme}://{self.host}:{self.port}").rstrip("/")

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
            db_path=self.home / "audit" / "audit.db", synchronous=self.audit_synchronous,
            fsync=self.audit_fsync, fsync_interval=self.audit_fsync_interval,
            spool_quota_bytes=self.audit_spool_quota_mb * 1024 * 1024,
            batch_delay=self.audit_batch_delay, keys_dir=self.keys_dir,
            witness_dirs=tuple(self.audit_witness_dirs),
            checkpoint_every=self.audit_checkpoint_every,
            checkpoint_seconds=self.audit_checkpoint_seconds,
            checkpoint_events=self.audit_checkpoint_events,
            sinks=tuple(self.audit_sinks), jsonl_path=self.audit_jsonl_path,
            es_url=self.audit_es_url,
            es_api_key=self.audit_es_api_key.get_secret_value() if self.audit_es_api_key else None,
            es_ca_certs=self.audit_es_ca_certs,
        )

    def state_settings(self) -> StateSettings:
        return StateSettings(
            redis_url=self.redis_url.get_secret_value() if self.redis_url else None,
            key_prefix=self.redis_key_prefix, fail_open=self.redis_fail_open,
            timeout=self.redis_timeout)

    def redacted(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("secret_pepper", "audit_es_api_key", "federation_client_secret", "directory_url",
                    "redis_url", "policy_redis_url"):
            if data.get(key):
                data[key] = "********"
        data["effective_issuer"] = self.effective_issuer
        return data
