"""Bearer-token authentication for every augserve method, as a server interceptor."""

from __future__ import annotations

import hmac

import grpc

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # probes and discovery need no token


def _refuse(message: str):
    async def abort(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return abort


class TokenAuth(grpc.aio.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` with one of the tokens (``--token``, or a tenant's);
    compares each in constant time; never logs a token."""

    def __init__(self, tokens: str | list[str]):
        self._expected = [f"Bearer {token}".encode() for token in ([tokens] if isinstance(tokens, str) else tokens)]

    async def intercept_service(self, continuation, details):
        if details.method.startswith(OPEN_SERVICES):
            return await continuation(details)
        given = [str(value).encode() for key, value in details.invocation_metadata or () if key == "authorization"]
        # several headers are refused whatever their order: proxies and libraries disagree on which one counts
        if len(given) == 1 and sum(hmac.compare_digest(given[0], expected) for expected in self._expected):
            return await continuation(details)  # the sum compares with every token: no early exit
        handler = await continuation(details)
        if handler is None:
            return None
        message = f"{len(given)} authorization headers; send one" if len(given) > 1 else \
            "missing or wrong bearer token (metadata 'authorization: Bearer <token>')"
        refuse = _refuse(message)
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(refuse)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)
