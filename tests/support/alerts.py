"""An alerter for unit tests that keeps the texts it is asked to send."""

from __future__ import annotations

from pydantic import SecretStr

from binlake.alerts import Alerter


class AlertsDouble(Alerter):
    """Keeps the texts it is asked to send."""

    def __init__(self) -> None:
        super().__init__(SecretStr(""))
        self.texts: list[str] = []

    def send(self, text: str) -> bool:
        self.texts.append(text)
        return True
