# One image for the three long-running parts of a deployment (docker-compose.yaml, and the
# user-code deployment of deploy/helm/values.yaml): the code location's gRPC server, the
# webserver and the daemon. Which one a container runs is the entrypoint's argument:
#   docker run IMAGE grpc | webserver | daemon          (deploy/entrypoint.sh)
# The instance is PostgreSQL (deploy/dagster-postgres.yaml), its connection from DAGSTER_POSTGRES_*
# environment variables given when the container starts; no secret is baked into the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    APP_HOME=/opt/dagster/app

# A non-root user owns the instance folder (registries, run outputs, alert files live below it).
RUN groupadd --system --gid 1000 dagster \
    && useradd --system --uid 1000 --gid dagster --home-dir /opt/dagster --shell /usr/sbin/nologin dagster

WORKDIR ${APP_HOME}
# Dependencies first (a layer that survives code edits), then the code itself.
COPY pyproject.toml README.md ./
COPY ml_platform ./ml_platform
RUN pip install '.[postgres]'

COPY deploy ./deploy
RUN mkdir -p ${DAGSTER_HOME} \
    && cp deploy/dagster-postgres.yaml ${DAGSTER_HOME}/dagster.yaml \
    && chown -R dagster:dagster ${DAGSTER_HOME} \
    && chmod 0755 deploy/entrypoint.sh

USER dagster
# gRPC code server, webserver
EXPOSE 4000 3000
ENTRYPOINT ["/opt/dagster/app/deploy/entrypoint.sh"]
CMD ["grpc"]
