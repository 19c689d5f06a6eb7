"""`provision --verbose`: one line per HTTP request on stderr, redacted."""

from __future__ import annotations

import logging


class _RedactingFilter(logging.Filter):
    """Formats each record once and redacts it: a URL's password or an API key never reaches stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        from provisioner.redact import redact

        message = record.getMessage()
        if '"' not in message:  # connection bookkeeping, not a request line
            return False
        record.msg, record.args = redact(message), None
        return True


def log_http_requests() -> None:
    """Send urllib3's one line per request (method, path, status) to stderr; bodies are never logged."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("  http: %(message)s"))
    handler.addFilter(_RedactingFilter())
    logger = logging.getLogger("urllib3.connectionpool")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
