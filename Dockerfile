# One image for binlake's Python processes: the bronze worker, connector registration and
# Dagster (webserver, daemon, code server, run containers); the `production` extra adds
# dagster-docker, the run launcher of deploy/dagster/dagster.yaml.
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH UV_COMPILE_BYTECODE=1
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project --extra production
COPY binlake ./binlake
COPY cdc ./cdc
COPY streams ./streams
COPY compactor ./compactor
COPY dagster_defs ./dagster_defs
RUN uv sync --frozen --extra production
ENV DAGSTER_HOME=/opt/dagster/home
COPY deploy/dagster/dagster.yaml /opt/dagster/home/dagster.yaml
RUN useradd --create-home binlake && mkdir -p /opt/dagster/home && chown binlake /opt/dagster/home
USER binlake
CMD ["binlake", "--help"]
