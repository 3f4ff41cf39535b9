# The gateway's image: `docker build -t consultation-gateway:0.1.0 .`
#
# Two stages. The build stage installs the gateway and its pinned dependencies (all published as
# wheels: no compiler is needed, and none is present) into a virtual environment; the final stage
# copies only that environment onto a fresh slim Python, removes pip, and runs as uid 10001.
# Nothing is written at run time but /tmp, so the root filesystem can be read-only
# (k8s/base/deployment.yaml sets readOnlyRootFilesystem). Releases pin both FROM lines by digest
# (python:3.11-slim-bookworm@sha256:...).

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY resolvers ./resolvers
# Extras: s3 (recordings in object storage) and tracing (OpenTelemetry, off unless configured).
# Bytecode is compiled here, because the running container cannot write it.
RUN python -m venv /opt/gateway \
    && /opt/gateway/bin/pip install --no-cache-dir --no-compile ".[s3,tracing]" \
    && /opt/gateway/bin/python -m compileall -q -j 0 /opt/gateway/lib \
    && /opt/gateway/bin/pip uninstall --yes pip

FROM python:3.11-slim-bookworm
# The base image's own pip and setuptools are not needed at run time.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin gateway
COPY --from=build /opt/gateway /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
