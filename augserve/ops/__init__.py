"""Batched image ops: pure functions of (x, per-sample params).

Every op takes ``x`` of shape ``(B, C, H, W)``, uint8 in [0, 255] or float in
[0, 1], and per-sample parameters of shape ``(B,)``; it returns a new tensor of
the same dtype and shape. Semantics follow ``torchvision.transforms.v2.functional``
so that a sample here matches torchvision given the same parameters.
"""
