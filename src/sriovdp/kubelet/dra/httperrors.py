"""Why a call to the apiserver failed, in one line: urllib3's ``MaxRetryError`` ("Max
retries exceeded with url ...", although the client makes one try) is unwrapped to its
cause ("... Failed to establish a new connection: [Errno 111] Connection refused")."""

from __future__ import annotations


def failure_text(exc: BaseException) -> str:
    """The text of a connection-level error of the official client (OSError, urllib3's
    errors, a bad answer's ValueError)."""
    from urllib3.exceptions import MaxRetryError

    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        return str(exc.reason)
    return str(exc)


__all__ = ["failure_text"]
