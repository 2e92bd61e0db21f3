"""Server refusals as Python exceptions: one class per gRPC status, never a raw ``grpc.RpcError``."""

from __future__ import annotations

import grpc


class ServerError(Exception):
    """A call the server (or the channel) refused; ``code`` is the gRPC status, ``details`` its message."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str = ""):
        self.code = code
        self.details = details
        self.target = target
        where = f" [{target}]" if target else ""
        super().__init__(f"{code.name}: {details}{where}")


class InvalidArgument(ServerError):
    """The request is malformed; retrying it cannot help."""


class ResourceExhausted(ServerError):
    """The server's queue is full or the message is too large; back off or send less."""


class DeadlineExceeded(ServerError):
    """The call's timeout passed before the server answered."""


class Unavailable(ServerError):
    """No replica could be reached (after retries and failover)."""


class Unauthenticated(ServerError):
    """Missing or wrong bearer token."""


class FailedPrecondition(ServerError):
    """The server lacks something the call needs (e.g. a dataset's package)."""


class Internal(ServerError):
    """The server failed unexpectedly; its log has the details."""


class Cancelled(ServerError):
    """The call was cancelled."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def from_rpc_error(error: grpc.RpcError, target: str) -> ServerError:
    """The matching ``ServerError`` subclass, with the targets the client was pointed at."""
    code, details = error.code(), error.details() or ""
    return _BY_CODE.get(code, ServerError)(code, details, target)
