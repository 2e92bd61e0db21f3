"""What the client and the server agree on: gRPC settings, headers, the image files the service decodes."""

# Batches are megabytes: a 64 MiB stream window lets one stream carry several in flight without
# waiting on flow-control updates (bench/RESULTS.md has the measurement). Both ends set it.
HTTP2_WINDOWS = [("grpc.http2.lookahead_bytes", 64 << 20), ("grpc.http2.bdp_probe", 0)]

# A cluster's common faults are silent: a partitioned host or a frozen process sends no reset, and a
# connection to it would wait for good. Each end pings the other while a connection is open and drops it when
# a ping goes unanswered: the client within KEEPALIVE_S + KEEPALIVE_TIMEOUT_S (5 s: its streams then fail
# over), the server within 20 s (the calls of a client that vanished are cancelled, their slots freed).
KEEPALIVE_S, KEEPALIVE_TIMEOUT_S = 2, 3
CLIENT_KEEPALIVE = [("grpc.keepalive_time_ms", KEEPALIVE_S * 1000),
                    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_S * 1000),
                    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_S * 1000),  # any ping, not 60 s
                    ("grpc.keepalive_permit_without_calls", 1),  # idle replicas too: a dead one leaves rotation
                    ("grpc.http2.max_pings_without_data", 0)]  # keep pinging while a long answer is awaited
# A replica whose connection failed is tried again every few seconds at most (gRPC's backoff grows to 120 s),
# so one that comes back (a healed partition) is in rotation again within seconds.
RECONNECT = [("grpc.initial_reconnect_backoff_ms", 1000), ("grpc.min_reconnect_backoff_ms", 1000),
             ("grpc.max_reconnect_backoff_ms", 4000)]
SERVER_KEEPALIVE = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 10_000),
                    ("grpc.keepalive_permit_without_calls", 1),
                    # the clients' pings, every KEEPALIVE_S even on idle connections, are welcome (gRPC's
                    # default answers pings more often than every 5 minutes with GOAWAY "too_many_pings")
                    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_S * 1000 // 2),
                    ("grpc.http2.max_pings_without_data", 0)]

# The metadata header a call declares its tenant in (fair sharing; a token bound to a tenant takes precedence).
TENANT_HEADER = "x-augserve-tenant"
# The metadata header of a client's own probe (may shared memory be used?): answered, never counted as a request.
PROBE_HEADER = "x-augserve-probe"

# File names of the images the service decodes itself: what the client collects and the server indexes.
ENCODED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
