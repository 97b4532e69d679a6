"""The ``alerting:`` section of the collector config.

Alerting is optional: without ``alertmanager_url`` nothing is sent and the
collector runs as before. The collector's config model embeds this model as
``alerting: AlertingSettings = AlertingSettings()``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from commune_common.units import Duration


class AlertingSettings(BaseModel):
    """Where and how often verdict alerts go to Alertmanager."""

    model_config = ConfigDict(extra="forbid")

    alertmanager_url: str | None = Field(
        default=None, description="Alertmanager base URL, e.g. http://127.0.0.1:9093; unset = alerting off")
    resend_interval: Duration = Field(
        default=60.0, description="how often firing alerts are re-sent (Alertmanager expires them otherwise)")
    external_url: str | None = Field(
        default=None, description="the status page's public URL for links in alerts; default: the listen address")
    runbook_url: str | None = Field(
        default=None, description="runbook link template with {alertname}; default: the status page's help")
    timeout: Duration = Field(default=5.0, description="one POST to Alertmanager")
    queue_size: int = Field(default=256, ge=1, description="batches waiting to be sent before the oldest is dropped")
    max_attempts: int = Field(default=5, ge=1, description="tries per batch before it is dropped")
    hold_down: bool = Field(
        default=True, description="send an alert only once its cause has lasted the same for: as the Prometheus "
                                  "rule of that name (one hold-down per alert, whichever side sends it)")

    @field_validator("alertmanager_url", "external_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("resend_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @property
    def enabled(self) -> bool:
        return self.alertmanager_url is not None

    def runbook_for(self, alertname: str, external_url: str) -> str:
        template = self.runbook_url or "{external_url}/help/alerts#{alertname}"
        return template.format(external_url=self.external_url or external_url, alertname=alertname)
