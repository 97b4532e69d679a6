"""How to talk SNMP to one device: version, credentials, timeouts, walk size.

Credentials are read from a file or an environment variable named in the
config, so the YAML itself can be shared and committed; an inline value is
accepted but discouraged. Every credential is a pydantic ``SecretStr``: its
repr is ``'**********'``, so it cannot leak through a log line, an error
message or ``probe-once`` output by accident. The value is read at each round,
which lets an operator rotate a key without restarting the agent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from commune_agent.snmp.errors import SnmpCredentialError
from commune_common.units import Duration

ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
AuthProtocol = Literal["SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"]
# AES-192/AES-256 follow Net-SNMP (Blumenthal key extension); the -C forms are Cisco's (Reeder).
PrivProtocol = Literal["AES", "AES-128", "AES-192", "AES-256", "AES-192-C", "AES-256-C"]


def _version_text(value: object) -> object:
    """YAML reads ``version: 3`` as an int and ``version: 2c`` as text; accept both."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def read_secret(field: str, inline: SecretStr | None, path: Path | None, env: str | None) -> str | None:
    """The secret's value, or None when none of the three is set. Errors never include the value."""
    if inline is not None:
        return inline.get_secret_value()
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SnmpCredentialError(f"{field}_file {path}: cannot read ({reason})") from None
        value = text.strip("\r\n")
        if not value:
            raise SnmpCredentialError(f"{field}_file {path} is empty")
        return value
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SnmpCredentialError(f"{field}_env: environment variable {env} is not set")
        return value
    return None


def _count(*values: object) -> int:
    return sum(v is not None for v in values)


class SnmpSettings(BaseModel):
    """The ``snmp:`` block of a device or UPS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[Literal["1", "2c", "3"], BeforeValidator(_version_text)] = "2c"
    port: int = Field(default=161, ge=1, le=65535)
    community: SecretStr | None = Field(default=None, description="inline community (discouraged: use _file or _env)")
    community_file: Path | None = Field(default=None, description="file holding the community")
    community_env: str | None = Field(default=None, pattern=ENV_NAME, description="environment variable holding it")
    user: str | None = Field(default=None, min_length=1, max_length=32, description="SNMPv3 user name")
    auth_protocol: AuthProtocol = "SHA"
    auth_key: SecretStr | None = None
    auth_key_file: Path | None = None
    auth_key_env: str | None = Field(default=None, pattern=ENV_NAME)
    priv_protocol: PrivProtocol = "AES"
    priv_key: SecretStr | None = None
    priv_key_file: Path | None = None
    priv_key_env: str | None = Field(default=None, pattern=ENV_NAME)
    context: str = Field(default="", max_length=32, description="SNMPv3 context name")
    timeout: Duration = Field(default=2.0, gt=0, le=60, description="wait for one reply")
    retries: int = Field(default=1, ge=0, le=5, description="resends after a timeout")
    max_repetitions: int = Field(default=25, ge=1, le=200, description="rows asked per GETBULK request")
    max_concurrent: int = Field(default=2, ge=1, le=16, description="requests in flight to this device at once")

    @model_validator(mode="after")
    def _credentials_fit_version(self) -> SnmpSettings:
        community = _count(self.community, self.community_file, self.community_env)
        auth = _count(self.auth_key, self.auth_key_file, self.auth_key_env)
        priv = _count(self.priv_key, self.priv_key_file, self.priv_key_env)
        if self.version in ("1", "2c"):
            if community != 1:
                raise ValueError(f"SNMP v{self.version} needs exactly one of community_file, community_env "
                                 "or community")
            if self.user or auth or priv:
                raise ValueError(f"user, auth_key* and priv_key* belong to SNMPv3, not v{self.version}")
            return self
        if not self.user:
            raise ValueError("SNMPv3 needs a user")
        if community:
            raise ValueError("community* belongs to SNMP v1/v2c; SNMPv3 uses user, auth_key*, priv_key*")
        if auth > 1 or priv > 1:
            raise ValueError("give each of auth_key and priv_key at most once (inline, _file or _env)")
        if priv and not auth:
            raise ValueError("privacy (priv_key) needs authentication too: add auth_key_file or auth_key_env")
        return self

    @property
    def security_level(self) -> str:
        """noAuthNoPriv, authNoPriv or authPriv, from which keys are configured (v3 only)."""
        if _count(self.priv_key, self.priv_key_file, self.priv_key_env):
            return "authPriv"
        if _count(self.auth_key, self.auth_key_file, self.auth_key_env):
            return "authNoPriv"
        return "noAuthNoPriv"

    def request_budget(self) -> float:
        """The longest one request can take: every try waits ``timeout``."""
        return self.timeout * (self.retries + 1)

    def community_value(self) -> str | None:
        return read_secret("community", self.community, self.community_file, self.community_env)

    def auth_key_value(self) -> str | None:
        return read_secret("auth_key", self.auth_key, self.auth_key_file, self.auth_key_env)

    def priv_key_value(self) -> str | None:
        return read_secret("priv_key", self.priv_key, self.priv_key_file, self.priv_key_env)
