"""Generated protobuf and gRPC stubs for augserve.v1 (`make protos`); never edited by hand."""
