"""An answer as the wire carries it: the batch (inline or named in the client's region), labels, provenance."""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from augserve import framing, wire
from augserve.server.jobs import Done
from augserve.server.requests import Built
from augserve.v1 import augserve_pb2 as pb


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def params_json(params: list[dict]) -> str:
    return json.dumps([{k: _jsonable(v) for k, v in step.items()} for step in params])


def write_answer(response: pb.AugmentResponse, built: Built, done: Done) -> framing.Framed:
    """Fill ``response`` (a fresh message, or the batch field of a dataset answer); the tensors' bytes travel
    beside it, never copied into it."""
    out, asked = done.output, built.asked
    response.request_id, response.label_smoothing = asked.request_id, out.label_smoothing
    if built.deferred is not None:
        response.deferred_normalize.mean[:] = built.deferred.fill_for(out.x, "mean")
        response.deferred_normalize.std[:] = built.deferred.fill_for(out.x, "std")
    payloads = {}
    if isinstance(out.x, list):  # a text pipeline's sentences
        response.texts.extend(out.x)
    elif done.in_region:  # already in the client's region: only the reference travels
        wire.describe_shared(response.x, out.x, asked.output_shm)
    else:
        payloads[framing.ANSWER_X] = wire.describe(response.x, out.x)
    if out.labels is not None:
        payloads[framing.ANSWER_LABELS] = wire.describe(response.labels, out.labels)
    if out.lengths is not None:  # sent, or changed by a step: each sample's valid length after the pipeline
        response.lengths[:] = out.lengths.tolist()
    if asked.return_params:
        response.params_json = params_json(out.params)
    return framing.Framed(response, payloads)
