# syntax=docker/dockerfile:1
# The augserve server: a CUDA runtime base, Python 3.11, and the package installed by the same
# `make install` that every machine and CI run (pinned torch/torchvision from pyproject.toml).
# Build: docker build -t augserve:0.4.0 .     Run: docker run --gpus all -p 50051:50051 augserve:0.4.0
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-rockylinux9

FROM ${CUDA_IMAGE} AS build
# hadolint ignore=DL3041
RUN dnf install -y python3.11 python3.11-pip make && dnf clean all
WORKDIR /opt/augserve
COPY pyproject.toml Makefile README.md ./
COPY protos ./protos
COPY augserve ./augserve
RUN make install PYTHON=python3.11 EXTRAS=server,data

FROM ${CUDA_IMAGE}
# hadolint ignore=DL3041
RUN dnf install -y python3.11 && dnf clean all \
    && useradd --uid 10001 --user-group --no-create-home --shell /sbin/nologin augserve
COPY --from=build /opt/augserve /opt/augserve
ENV PATH=/opt/augserve/.venv/bin:$PATH \
    AUGSERVE_HOST=0.0.0.0 \
    AUGSERVE_PORT=50051 \
    AUGSERVE_METRICS_PORT=9090 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 50051 9090
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["augserve", "health"]
ENTRYPOINT ["augserve", "serve"]
