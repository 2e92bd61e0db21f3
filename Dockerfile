# syntax=docker/dockerfile:1
# The augserve server image: `make image` here, or `docker build -t augserve:0.5.0 .` on a Docker host.
#
# Base: a slim Debian bookworm with CPython 3.11 (the Docker Official Image python:3.11-slim-bookworm,
# rebuilt upstream for Debian security updates; ~130 MB). Not a CUDA base image: torch's wheels carry
# their own CUDA 13 libraries (cuBLAS, cuDNN, NPP, nvJPEG for torchvision.io's GPU decode) in the
# nvidia-* packages, so the image needs only the host's NVIDIA driver (>= 580 for CUDA 13), which the
# NVIDIA container toolkit mounts (`docker run --gpus all`, or the nvidia.com/gpu resource). A CUDA
# runtime base would add ~3 GB of the same libraries twice. Any base with python3.11 (venv, ensurepip)
# and useradd works: `make image` builds one from Debian packages (mmdebstrap) where no registry is
# reachable and passes it as BASE.
ARG BASE=python:3.11-slim-bookworm

# Dependencies alone, from the lock file: a code-only change reuses this stage (and its ~5 GB layer).
# The package index settings of the building machine come in as a secret (pip.conf) and never reach
# a layer; without one, pip uses PyPI.
FROM ${BASE} AS dependencies
COPY deploy/image/requirements.lock /tmp/requirements.lock
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin augserve \
    && python3.11 -m venv /opt/augserve/venv \
    && /opt/augserve/venv/bin/pip install --no-cache-dir --no-compile --no-deps --require-hashes \
        -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

# The package itself, into a folder of its own (a small layer).
FROM dependencies AS package
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY augserve ./augserve
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    /opt/augserve/venv/bin/pip install --no-cache-dir --no-deps --target /opt/augserve/app .

# No RUN in the final stage: a build's mounts (the local index, where `make image` adds them) leave no
# mount points behind in it. The user comes from the dependencies stage, made from the same base.
FROM ${BASE}
COPY --from=dependencies /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/
COPY --from=dependencies /opt/augserve/venv /opt/augserve/venv
COPY --from=package /opt/augserve/app /opt/augserve/app
ENV PATH=/opt/augserve/app/bin:/opt/augserve/venv/bin:$PATH \
    PYTHONPATH=/opt/augserve/app \
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
