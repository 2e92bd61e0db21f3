"""The service's methods on a channel (sync or ``grpc.aio``), speaking ``framing`` instead of plain messages.

Requests go out as ``Framed`` (or bytes framed earlier): a tensor's bytes are copied once, into the
wire bytes. Answers that carry tensors come back as ``Framed`` whose tensors are views of the received
bytes. Generated stubs (``augserve.v1``) copy each tensor several times on both sides.
"""

from __future__ import annotations

from google.protobuf import message_factory

from augserve import framing
from augserve.v1 import augserve_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Augmentation"]


class Stub:
    """One multi-callable per method of the Augmentation service, named as the method is."""

    def __init__(self, channel):
        kinds = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
                 (True, False): channel.stream_unary, (True, True): channel.stream_stream}
        for method in SERVICE.methods:
            answer = message_factory.GetMessageClass(method.output_type)
            read = framing.deserializer(answer) if framing.has_tensors(answer) else answer.FromString
            call = kinds[(method.client_streaming, method.server_streaming)](
                f"/{SERVICE.full_name}/{method.name}", request_serializer=framing.serialize,
                response_deserializer=read)
            setattr(self, method.name, call)
