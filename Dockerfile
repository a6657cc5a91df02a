# syntax=docker/dockerfile:1
# qbridge: one Dockerfile for every service image; the build target picks the service.
# Build from the repository root (`make images` builds them all with podman):
#   docker build --target intake -t qbridge/intake:dev .
# Targets: intake, orchestrator, quantum-executor, classical-fallback, results-sink, gateway.
# Every image holds the pinned dependencies, libs/, schemas/ and tools/ops/ plus ONE
# service package; the shared stages are built once and reused by every target.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- shared runtime
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    QBRIDGE_HTTP_PORT=9100
WORKDIR /app

# An unprivileged user with a fixed uid/gid (Kubernetes runAsUser/fsGroup use 10001).
RUN groupadd --system --gid 10001 qbridge \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin qbridge

# Pinned runtime dependencies first: this layer is reused until the lock file changes.
# requirements.lock pins every transitive dependency with its hashes (`make lock`
# regenerates it from requirements.txt); pip refuses anything that does not match.
COPY requirements.lock ./
RUN pip install --no-compile --require-hashes --no-deps -r requirements.lock

COPY schemas/ schemas/
COPY libs/ libs/
COPY tools/ops/ tools/ops/
# Byte-compile at build time: the root filesystem is read-only at run time.
RUN python -m compileall -q libs tools "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

USER 10001:10001
# /metrics, /healthz, /readyz (and the results-sink's /dashboard).
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "ops.healthcheck", "http", "/healthz"]
# SIGTERM: the message in hand is finished (or handed back uncommitted), offsets committed.
STOPSIGNAL SIGTERM

# ---------------------------------------------------------------- service code, compiled
# Only a staging area: each target below copies its own package out of it.
FROM runtime AS code
USER root
COPY services/ services/
RUN python -m compileall -q services

# ---------------------------------------------------------------- one target per service
FROM runtime AS intake
LABEL org.opencontainers.image.title="qbridge-intake" \
      org.opencontainers.image.description="qbridge intake: validates problem requests"
COPY --from=code /app/services/intake/intake/ services/intake/intake/
ENV PYTHONPATH=/app/libs:/app/tools:/app/services/intake
CMD ["python", "-m", "intake"]

FROM runtime AS orchestrator
LABEL org.opencontainers.image.title="qbridge-orchestrator" \
      org.opencontainers.image.description="qbridge orchestrator: routing and the job state machine"
COPY --from=code /app/services/orchestrator/orchestrator/ services/orchestrator/orchestrator/
ENV PYTHONPATH=/app/libs:/app/tools:/app/services/orchestrator
CMD ["python", "-m", "orchestrator"]

FROM runtime AS quantum-executor
LABEL org.opencontainers.image.title="qbridge-quantum-executor" \
      org.opencontainers.image.description="qbridge quantum-executor: QAOA on Qiskit Aer"
COPY --from=code /app/services/quantum-executor/quantum_executor/ services/quantum-executor/quantum_executor/
ENV PYTHONPATH=/app/libs:/app/tools:/app/services/quantum-executor
CMD ["python", "-m", "quantum_executor"]

FROM runtime AS classical-fallback
LABEL org.opencontainers.image.title="qbridge-classical-fallback" \
      org.opencontainers.image.description="qbridge classical-fallback: OR-Tools CP-SAT"
COPY --from=code /app/services/classical-fallback/classical_fallback/ services/classical-fallback/classical_fallback/
ENV PYTHONPATH=/app/libs:/app/tools:/app/services/classical-fallback
CMD ["python", "-m", "classical_fallback"]

FROM runtime AS results-sink
LABEL org.opencontainers.image.title="qbridge-results-sink" \
      org.opencontainers.image.description="qbridge results-sink: provenance store, /dashboard"
COPY --from=code /app/services/results-sink/results_sink/ services/results-sink/results_sink/
ENV PYTHONPATH=/app/libs:/app/tools:/app/services/results-sink
CMD ["python", "-m", "results_sink"]

FROM runtime AS gateway
LABEL org.opencontainers.image.title="qbridge-gateway" \
      org.opencontainers.image.description="qbridge gateway: gRPC front door"
COPY --from=code /app/services/gateway/gateway/ services/gateway/gateway/
ENV PYTHONPATH=/app/libs:/app/tools:/app/services/gateway \
    QBRIDGE_GRPC_PORT=50051
# gRPC (Gateway, grpc.health.v1.Health, reflection when enabled) besides /metrics on 9100.
# The healthcheck stays HTTP (/healthz, from the runtime stage): the gRPC port speaks TLS
# only when QBRIDGE_TLS_CERT/KEY are set, as they are in every shipped deployment.
EXPOSE 50051
# SIGTERM: health turns NOT_SERVING, new calls are refused, calls in flight finish within
# QBRIDGE_SHUTDOWN_GRACE_S, then the process exits.
CMD ["python", "-m", "gateway"]
