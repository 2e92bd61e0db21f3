"""Encoded images in: headers before pixels, limits before work, then decoding on the batch's device."""

from augserve.encoded.batch import DecodeError, EncodedBatch, EncodedImage, is_encoded_image
from augserve.encoded.headers import FORMATS, Header, HeaderError, read_header

__all__ = ["FORMATS", "DecodeError", "EncodedBatch", "EncodedImage", "Header", "HeaderError", "is_encoded_image",
           "read_header"]
