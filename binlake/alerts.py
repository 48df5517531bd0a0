"""Alerts to a Slack-compatible incoming webhook (``settings.alerts.webhook_url``).

One POST of ``{"text": ...}`` per alert. Sending never raises: an alert that cannot be delivered
is logged (the Dagster UI still shows the failure that caused it) and the caller carries on.
The webhook URL carries its token, so it is never logged: not by this module, and not by httpx,
whose request log line names the URL (a filter on the ``httpx`` logger masks it).
"""

from __future__ import annotations

import logging

import httpx
from pydantic import SecretStr

from binlake.settings import Settings

log = logging.getLogger(__name__)

MASK = "<webhook url>"


class _MaskSecret(logging.Filter):
    """Replaces a secret in log records of another library before they are formatted."""

    def __init__(self, secret: str):
        super().__init__()
        # httpx logs the URL as it normalised it (host lower-cased, default port dropped,
        # spaces quoted): mask those forms too, and the path, where webhook tokens live.
        url = httpx.URL(secret.strip())
        forms = {secret, secret.strip(), str(url), url.raw_path.decode("ascii", "replace")}
        self.secrets = sorted((f for f in forms if len(f) > 1), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, MASK)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


_masked: set[str] = set()


def _mask_in_httpx_log(secret: str) -> None:
    if secret and secret not in _masked:
        _masked.add(secret)
        logging.getLogger("httpx").addFilter(_MaskSecret(secret))


class Alerter:
    """Sends alert texts to one webhook; does nothing when no webhook is configured."""

    def __init__(
        self,
        webhook_url: SecretStr,
        timeout_seconds: float = 5.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ):
        self._url = webhook_url
        self._timeout = timeout_seconds
        self._transport = transport
        _mask_in_httpx_log(webhook_url.get_secret_value())

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> Alerter:
        return cls(
            settings.alerts.webhook_url, settings.alerts.timeout_seconds, transport=transport
        )

    @property
    def enabled(self) -> bool:
        return bool(self._url.get_secret_value())

    def send(self, text: str) -> bool:
        """POST `text`; True if the webhook accepted it (2xx). Failures are logged, not raised."""
        url = self._url.get_secret_value()
        if not url:
            log.debug("no alerts.webhook_url set; alert not sent: %s", text)
            return False
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
                response = client.post(url, json={"text": text})
        except httpx.HTTPError as exc:
            # The exception's text may quote the URL; only its type is safe to log.
            log.warning("alert not delivered to the webhook (%s): %s", type(exc).__name__, text)
            return False
        if not response.is_success:
            log.warning(
                "alert not delivered: the webhook answered HTTP %s: %s", response.status_code, text
            )
            return False
        return True
