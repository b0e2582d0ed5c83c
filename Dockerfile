# prophoto-ingest: workers, trace sink and status service in one image; the command picks.
#   docker build -t prophoto-ingest .
#   docker run --rm prophoto-ingest worker --topics ingest,ingest-preview
# Two stages: the build stage may need compilers for wheels without a binary; the runtime
# stage gets only the virtualenv, exiftool and a non-root user.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The preview encoder (imaging/_jpegenc.c) compiles against Debian's libjpeg-turbo.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libjpeg62-turbo-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p streams tracestore imaging status \
    && touch streams/__init__.py tracestore/__init__.py imaging/__init__.py status/__init__.py \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall -y prophoto-ingest-streams
COPY streams ./streams
COPY tracestore ./tracestore
COPY imaging ./imaging
COPY status ./status
# The encoder extension is optional to pip; the image must not ship without it. Checked
# from / so that the sources in /src (which hold no built module) do not shadow the install.
RUN /opt/venv/bin/pip install --no-deps . \
    && cd / && /opt/venv/bin/python -c "import imaging._jpegenc" \
    && /opt/venv/bin/prophoto-ingest --help >/dev/null

FROM python:${PYTHON_VERSION}-slim-bookworm
# exiftool reads and strips metadata (pyexiftool drives it); tini reaps exiftool children
# and forwards SIGTERM so in-flight jobs get their grace period; libjpeg62-turbo is what the
# encoder extension links.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libimage-exiftool-perl tini libjpeg62-turbo \
    && rm -rf /var/lib/apt/lists/*
# Fixed uid/gid: the Helm chart's runAsUser and fsGroup use the same numbers.
RUN groupadd --system --gid 10001 ingest \
    && useradd --system --uid 10001 --gid ingest --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin ingest \
    && mkdir -p /data/storage /var/lib/prophoto-ingest \
    && chown -R 10001:10001 /data /var/lib/prophoto-ingest
COPY --from=build /opt/venv /opt/venv
# Read-only root filesystem in Kubernetes: nothing writes outside /tmp, the storage root and
# the working directory (faust keeps its "<group>-data" directory in the current directory).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    INGEST_STORAGE__ROOT=/data/storage
WORKDIR /var/lib/prophoto-ingest
USER 10001:10001
# Worker health (INGEST_WORKER__HEALTH_PORT) and the status service (INGEST_STATUS__PORT).
EXPOSE 8081 8080
ENTRYPOINT ["/usr/bin/tini", "--", "prophoto-ingest"]
CMD ["--help"]
