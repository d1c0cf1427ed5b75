# syntax=docker/dockerfile:1
#
# One image for the operator (`procjob run`, the default command) and the built-in worker stages
# (`procjob worker fetch`, set as the pod's command by the operator).
#
#   docker build -t ghcr.io/procjob/procjob:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
#
# Stages: `builder` builds the wheel and a virtualenv with it; `runtime` (the default, last
# stage) copies only the virtualenv — no compiler, no pip cache, no source tree; `dev` (used by
# the Tiltfile) adds a restart loop and lets the non-root user overwrite the installed package.
#
# The runtime runs as uid/gid 65532 (numeric, so the kubelet can check runAsNonRoot) and writes
# nothing outside /tmp, so it runs with readOnlyRootFilesystem and an emptyDir on /tmp.
# tests/unit/test_packaging.py repeats the install steps (wheel -> fresh venv -> entry points)
# because the build machines have no Docker engine.

# Pinned by tag; pin by digest too in your registry mirror (`python:3.11.14-slim-bookworm@sha256:...`).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Metadata first, so that a code-only change keeps the dependency layer below cached.
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/procjob \
 && /opt/procjob/bin/pip install /wheels/procjob-*.whl \
 && /opt/procjob/bin/pip uninstall -y pip \
 && /opt/procjob/bin/procjob --help >/dev/null \
 && /opt/procjob/bin/procjob crd >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG PYTHON_IMAGE
LABEL org.opencontainers.image.title="procjob" \
      org.opencontainers.image.description="Kubernetes operator for staged processing jobs, and its built-in worker stages" \
      org.opencontainers.image.source="https://github.com/procjob/procjob" \
      org.opencontainers.image.url="https://github.com/procjob/procjob" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"
COPY --from=builder /opt/procjob /opt/procjob
# HOME=/tmp: libraries that look for a home directory (libpq's .pgpass) find a writable one.
ENV PATH=/opt/procjob/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 65532:65532
# 8080: /metrics, /healthz, /readyz and the audit history API.
EXPOSE 8080
ENTRYPOINT ["procjob"]
CMD ["run"]

# Development image for the Tiltfile's live_update: Tilt syncs operator/procjob into the
# installed package (so uid 65532 must own it; the dev deployment turns readOnlyRootFilesystem
# off) and then signals the operator, which this loop starts again with the new code.
FROM runtime AS dev
USER 0:0
RUN chown -R 65532:65532 /opt/procjob/lib/python3.11/site-packages/procjob
USER 65532:65532
ENTRYPOINT ["/bin/sh", "-c", "trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT; while :; do procjob \"$@\" & child=$!; echo $child > /tmp/procjob.pid; wait $child; sleep 1; done", "procjob-dev"]
CMD ["run"]

# The default target is the runtime image.
FROM runtime
