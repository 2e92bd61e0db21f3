"""Prometheus metrics, one registry per server, served as text on their own HTTP port."""

from __future__ import annotations

import grpc
import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# The status label's values: a gRPC status, or SKIPPED (a served file left out of its batch).
STATUSES = (*(code.name for code in grpc.StatusCode), "SKIPPED")


class Metrics:
    def __init__(self, device: torch.device):
        self.registry = CollectorRegistry()
        self.requests = Counter("augserve_requests", "Requests by method, pipeline and status",
                                ["method", "pipeline", "status"], registry=self.registry)
        self.probes = Counter("augserve_client_probes", "Clients' shared-memory probes by status (calls a client "
                              "makes for itself: not in the request and sample counts)", ["status"],
                              registry=self.registry)
        self.samples = Counter("augserve_samples", "Samples by pipeline and status", ["pipeline", "status"],
                               registry=self.registry)
        self.batch_fill = Histogram("augserve_batch_fill", "Samples per device batch over max_batch",
                                    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0), registry=self.registry)
        self.device_batches = Counter("augserve_device_batches", "Device batches run", registry=self.registry)
        self.queue_depth = Gauge("augserve_queue_samples", "Samples waiting for the device", registry=self.registry)
        self.latency = Histogram("augserve_request_seconds", "Time from arrival to reply", ["method"],
                                 registry=self.registry)
        self.dataset_skipped = Counter("augserve_dataset_skipped", "Dataset samples left out of their batch "
                                       "(unreadable or undecodable files)", ["dataset"], registry=self.registry)
        self.cpu_threads = Gauge("augserve_cpu_threads", "Intra-op CPU threads the last device batch ran with",
                                 registry=self.registry)
        self.tenant_requests = Counter("augserve_tenant_requests", "Requests by tenant and status",
                                       ["tenant", "status"], registry=self.registry)
        self.tenant_samples = Counter("augserve_tenant_samples", "Samples augmented by tenant", ["tenant"],
                                      registry=self.registry)
        self.tenant_queue = Gauge("augserve_tenant_queue_samples", "Samples waiting for the device, by tenant",
                                  ["tenant"], registry=self.registry)
        self.tenant_wait = Histogram("augserve_tenant_wait_seconds", "Time from admission to the device, by tenant",
                                     ["tenant"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                     registry=self.registry)
        self.streams_open = Gauge("augserve_streams_open", "Streaming calls open, by method", ["method"],
                                  registry=self.registry)
        self.shared_batches = Counter("augserve_shared_batches", "Served-dataset batches by outcome: computed "
                                      "for a stream, or shared with one that asked for the same batch",
                                      ["outcome"], registry=self.registry)
        self.shared_window_bytes = Gauge("augserve_shared_window_bytes", "Answers kept for streams that ask for "
                                         "the same batches later", registry=self.registry)
        self.decoded_images = Counter("augserve_decoded_images", "Served image files by outcome: decoded for a "
                                      "stream, or shared from the decoded window", ["outcome"], registry=self.registry)
        self.decoded_window_bytes = Gauge("augserve_decoded_window_bytes", "Decoded served images kept for other "
                                          "streams that read the same files", registry=self.registry)
        self.cuda_graphs = Counter("augserve_cuda_graphs", "Device-plan calls on CUDA by outcome: a graph captured, "
                                   "replayed, or the call run eagerly", ["outcome"], registry=self.registry)
        self.cuda_graphs_cached = Gauge("augserve_cuda_graphs_cached", "Captured CUDA graphs kept for replay",
                                        registry=self.registry)
        memory = Gauge("augserve_device_memory_bytes", "Memory allocated on the device", registry=self.registry)
        if device.type == "cuda":
            memory.set_function(lambda: torch.cuda.memory_allocated(device))

    def forget_tenant(self, name: str) -> None:
        """Drop a forgotten tenant's series (Prometheus: label values must not grow without bound)."""
        label = self.tenant_label(name)
        for metric in (self.tenant_samples, self.tenant_queue, self.tenant_wait):
            metric.remove(label)
        for status in STATUSES:
            self.tenant_requests.remove(label, status)

    @staticmethod
    def tenant_label(name: str) -> str:
        """Tenants by connection share one label: one series per client connection would never end."""
        return "(connection)" if name.startswith("connection ") else name

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)
