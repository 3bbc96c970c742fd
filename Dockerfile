# dynvm service image: gunicorn serving the Flask API on port 5000.
# Mount the INI at /etc/dynvm/dynvmservice.ini and pass its ${...} secrets as
# environment variables, e.g.
#   docker run -v ./dynvmservice.ini:/etc/dynvm/dynvmservice.ini:ro \
#              -e XEN1_PASSWORD -p 5000:5000 dynvm
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY dynvm ./dynvm
RUN pip install . && rm -rf /src

RUN useradd --system --create-home --home-dir /var/lib/dynvm --shell /usr/sbin/nologin dynvm \
    && mkdir -p /etc/dynvm \
    && chown dynvm:dynvm /var/lib/dynvm

# State (SQLite under ./.dynvm/) lives in the working directory: mount a volume here to keep it.
WORKDIR /var/lib/dynvm
VOLUME ["/var/lib/dynvm"]
USER dynvm

ENV DYNVM_CONFIG=/etc/dynvm/dynvmservice.ini
EXPOSE 5000

HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=5)"]

CMD ["dynvm", "serve", "--bind", "0.0.0.0:5000", "--workers", "4"]
