# oai2ollama in a container: docker build -t oai2ollama . (see docs/deploy.md)
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install from the checkout, with the faster event loop and the Redis client; the build
# files go afterwards.
COPY pyproject.toml README.md LICENSE /src/
COPY oai2ollama /src/oai2ollama
RUN pip install '/src[speed,redis]' \
    && rm -rf /src \
    && groupadd --system --gid 10001 oai2ollama \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin oai2ollama

# A numeric user, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
WORKDIR /tmp

# Listening beyond the container needs a key: mount a key file and set
# OAI2OLLAMA_API_KEY_FILE (or set OAI2OLLAMA_API_KEY).
ENV OAI2OLLAMA_HOST=0.0.0.0 \
    OAI2OLLAMA_PORT=11435 \
    OAI2OLLAMA_LOG_FORMAT=json
EXPOSE 11435
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:11435/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["oai2ollama"]
