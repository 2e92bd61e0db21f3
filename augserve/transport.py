"""What the client and the server agree on: gRPC settings, headers, the image files the service decodes."""

# Batches are megabytes: a 64 MiB stream window lets one stream carry several in flight without
# waiting on flow-control updates (bench/RESULTS.md has the measurement). Both ends set it.
HTTP2_WINDOWS = [("grpc.http2.lookahead_bytes", 64 << 20), ("grpc.http2.bdp_probe", 0)]

# The metadata header a call declares its tenant in (fair sharing; a token bound to a tenant takes precedence).
TENANT_HEADER = "x-augserve-tenant"

# File names of the images the service decodes itself: what the client collects and the server indexes.
ENCODED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
