"""What the service refuses, and the status every failure maps to: nothing surfaces as UNKNOWN.

INVALID_ARGUMENT for bad fields, RESOURCE_EXHAUSTED for a full queue, DEADLINE_EXCEEDED for work
that expired before the device, INTERNAL (logged, without tensor bytes or tokens) for anything
unexpected.
"""

from __future__ import annotations

import logging

import grpc

log = logging.getLogger("augserve.server")


class Refused(Exception):
    """A request the service refuses: the status and the message the caller gets."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class QueueFull(Exception):
    """Admission refused: the queue holds its limit of samples."""


class DeadlineExpired(Exception):
    """The caller's deadline passed before the work reached the device."""


def invalid(message: str) -> Refused:
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, message)


def status_of(error: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status and message a failure reaches the caller with (the unexpected ones logged here)."""
    if isinstance(error, Refused):
        return error.code, str(error)
    if isinstance(error, QueueFull):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
    if isinstance(error, DeadlineExpired):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(error)
    if isinstance(error, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    log.exception("%s failed unexpectedly", method)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log"
