# flagman worker image: `docker build -t flagman .`, run by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app
RUN pip install . \
    && useradd --create-home --uid 10001 flagman \
    && mkdir -p /app/.flagman \
    && chown flagman /app/.flagman

USER flagman
CMD ["flagman", "worker"]
