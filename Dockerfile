# syntax=docker/dockerfile:1
# The one image every Cloud MarketData pod runs: `marketdata serve <service>` (collector, storage,
# volume-profile, order-flow, mcp); the chart sets the args, the default runs the collector.
# Runtime contract (charts/marketdata relies on it): uid/gid 10001, read-only root filesystem; the only
# writable paths are /tmp and the data directory /data (MARKETDATA_DATA_DIR), both mounted volumes.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the marketdata distribution and its dependencies into a venv without pip ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# The collector's C fast path (services/marketdata/collector/_fastframes.c, setup.py) is compiled
# here; the runtime stage gets the built module only, no compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv --without-pip /opt/marketdata
WORKDIR /src
# .dockerignore admits only what the distribution is built from.
COPY pyproject.toml setup.py README.md ./
COPY services ./services
# Byte-code is compiled here (pip's default): at run time nothing can be written next to the code.
RUN pip --python /opt/marketdata/bin/python install . \
 && /opt/marketdata/bin/marketdata --help >/dev/null \
 && /opt/marketdata/bin/python -c "import marketdata.collector._fastframes"

# --- runtime: the venv on a clean slim base, non-root ----------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="Cloud MarketData" \
      org.opencontainers.image.description="Binance and Bybit market data over gRPC, volume profile, order flow, MCP bridge" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/marketdata /opt/marketdata
RUN mkdir -p /data && chown 10001:10001 /data
ENV PATH=/opt/marketdata/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MARKETDATA_BIND_HOST=0.0.0.0 \
    MARKETDATA_DATA_DIR=/data
USER 10001:10001
WORKDIR /data
# collector, storage, volume-profile, order-flow (gRPC) / mcp (HTTP), and their metrics ports
EXPOSE 50051 50052 50053 50054 8080 9101 9102 9103 9104 9105
ENTRYPOINT ["marketdata"]
CMD ["serve", "collector"]
