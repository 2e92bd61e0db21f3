"""Tools around the engine and the service: the bench, the preview grid, the GPU check. Nothing in the
engine, server or client imports them."""
