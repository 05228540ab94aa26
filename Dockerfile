# deepline's model server. Build: docker build -t deepline .
# Run:   docker run --read-only --tmpfs /tmp -p 8080:8080 -p 8081:8081 \
#            -v "$PWD/models:/models:ro" deepline
# The model repository (NAME/VERSION/ bundles, `deepline repo add`) is mounted read-only; the
# server runs as an unprivileged user and writes only to /tmp.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib HOME=/tmp
# the CPU build of torch first, so that nothing pulls a CUDA build
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<2.15"
COPY pyproject.toml README.md /src/
COPY deepline /src/deepline
COPY docker/entrypoint.sh /usr/local/bin/deepline-serve
RUN pip install /src && rm -rf /src \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin deepline

USER 10001
ENV DEEPLINE_MODELS=/models PORT=8080 GRPC_PORT=8081 WORKERS=1
EXPOSE 8080 8081
HEALTHCHECK CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/v2/health/live')"
ENTRYPOINT ["deepline-serve"]
