"""E-mail when a training run ends, for TrainProject's notificationEmailAddress, over SMTP when configured."""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "opencustomvision@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_seconds: float = 10.0


class TrainingNotifier:
    def __init__(self, smtp: SmtpSettings | None) -> None:
        self._smtp = smtp

    def training_finished(self, recipient: str, project_name: str, iteration_name: str, status: str, reason: str | None) -> None:
        """Send the message; a mail failure is logged and never fails the training it reports on."""
        if self._smtp is None:
            logger.info("no SMTP server configured; not notifying %s", recipient)
            return
        message = EmailMessage()
        message["From"] = self._smtp.sender
        message["To"] = recipient
        message["Subject"] = f"{project_name}: {iteration_name} {status.lower()}"
        body = f"Training of {iteration_name} in project '{project_name}' ended with status {status}."
        message.set_content(body + (f"\n\nReason: {reason}" if reason else ""))
        try:
            with smtplib.SMTP(self._smtp.host, self._smtp.port, timeout=self._smtp.timeout_seconds) as client:
                if self._smtp.starttls:
                    client.starttls()
                if self._smtp.username:
                    client.login(self._smtp.username, self._smtp.password or "")
                client.send_message(message)
        except (OSError, smtplib.SMTPException):
            logger.exception("could not send the training notification to %s", recipient)
