"""The service's method handlers, with request bytes parsed by augserve instead of by grpc.

grpc answers a request it cannot deserialize with UNKNOWN ("Unexpected DecodeError") and leaves
a stream that receives one hanging. Registering every method with raw bytes in and parsing them
here makes undecodable bytes one more bad request: INVALID_ARGUMENT naming the message type, and
on a stream, the end of the stream after the answers to what came before. Tensor bytes are never
copied out of the received buffer, and answers are written with theirs beside them (``framing``).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import grpc
from google.protobuf import message as protobuf_message
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from augserve import framing
from augserve.server.errors import Refused


def parse(message_class: type, raw: bytes, where: str) -> Any:
    """The message; ``Framed`` for one that carries tensors (their bytes stay views of ``raw``)."""
    try:
        framed = framing.parse(raw, message_class)
    except protobuf_message.DecodeError as error:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                      f"{where}: not a valid {message_class.DESCRIPTOR.full_name} message ({error})") from None
    return framed if framing.has_tensors(message_class) else framed.message


async def _parsed_stream(raw_requests: AsyncIterator[bytes], message_class: type) -> AsyncIterator[Any]:
    """The stream's messages in order; Refused at the first undecodable one."""
    position = 0
    async for raw in raw_requests:
        yield parse(message_class, raw, f"request {position} of the stream")
        position += 1


def _wrap(implementation, method, message_class: type, on_refused):
    name = method.name
    if method.client_streaming and method.server_streaming:  # the implementation meets Refused in the bad one's place
        async def stream_stream(raw_requests, context):
            async for item in implementation(_parsed_stream(raw_requests, message_class), context):
                yield item
        return stream_stream

    if method.client_streaming:
        async def stream_unary(raw_requests, context):
            return await implementation(_parsed_stream(raw_requests, message_class), context)
        return stream_unary

    async def parse_or_abort(raw: bytes, context) -> Any:
        try:
            return parse(message_class, raw, "request")
        except Refused as refused:
            on_refused(name, refused.code)
            await context.abort(refused.code, str(refused))

    if method.server_streaming:
        async def unary_stream(raw, context):
            request = await parse_or_abort(raw, context)
            async for item in implementation(request, context):
                yield item
        return unary_stream

    async def unary_unary(raw, context):
        return await implementation(await parse_or_abort(raw, context), context)
    return unary_unary


def service_handler(servicer: Any, service: ServiceDescriptor, on_refused) -> grpc.GenericRpcHandler:
    """Every method of ``service`` bound to the servicer's method of the same name.

    ``on_refused(method, code)`` is told of each request refused before it reached the servicer.
    """
    kinds = {(False, False): grpc.unary_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler,
             (True, True): grpc.stream_stream_rpc_method_handler}
    handlers = {}
    for method in service.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        behaviour = _wrap(getattr(servicer, method.name), method, request_class, on_refused)
        make = kinds[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(behaviour, request_deserializer=None, response_serializer=framing.serialize)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
