# The gateway's image: `docker build -t consultation-gateway:0.1.0 .`
#
# Two stages. The build stage installs uv (pinned and hash-checked, scripts/uv-requirements.txt)
# and with it exactly what uv.lock holds, every distribution checked against its hash, nothing
# resolved (--frozen): the gateway and its s3 and tracing extras, all published as wheels (no
# compiler is needed, and none is present). The gateway itself is built by the locked hatchling
# of the build group, which a second sync then removes: /opt/gateway holds what sbom.cdx.json
# lists. The final stage copies only that environment onto a fresh slim Python and runs as uid
# 10001. Nothing is written at run time but /tmp, so the root filesystem can be read-only
# (k8s/base/deployment.yaml sets readOnlyRootFilesystem). Releases pin both FROM lines by digest
# (python:3.11-slim-bookworm@sha256:...).

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/gateway \
    UV_COMPILE_BYTECODE=1
WORKDIR /src
COPY scripts/uv-requirements.txt ./scripts/
RUN python -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --require-hashes -r scripts/uv-requirements.txt
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
COPY resolvers ./resolvers
# The reference web app and its manifest go into the wheel (gateway dev serves them; serve never).
COPY apps/web ./apps/web
COPY apps/manifest.json ./apps/
# Bytecode is compiled here (UV_COMPILE_BYTECODE), because the running container cannot write it.
RUN /opt/uv/bin/uv sync --frozen --no-editable --extra s3 --extra tracing \
        --python /usr/local/bin/python3 \
    && /opt/uv/bin/uv sync --frozen --no-editable --extra s3 --extra tracing \
        --no-default-groups --python /usr/local/bin/python3

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
