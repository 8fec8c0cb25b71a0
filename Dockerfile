# fmnist serve: the base install (numpy, onnxruntime, Pillow, FastAPI, uvicorn; no torch) as a
# non-root container. Every Python package comes from requirements/base.txt (exact versions, sha256
# hashes: two builds a month apart run the same code); fmnist itself is built with the setuptools
# of requirements/build.txt.
#
#   docker build -t fmnist:0.1.0 .
#   docker run --rm -p 8000:8000 fmnist:0.1.0                          # the bundled model
#   docker run --rm -p 8000:8000 -v "$PWD/artifacts:/bundle:ro" -e FMNIST_ARTIFACTS=/bundle fmnist:0.1.0
#
# Settings: FMNIST_WORKERS (server processes, default 1), FMNIST_PORT (default 8000),
# FMNIST_ARTIFACTS (a bundle folder; unset: the bundled one); any other `fmnist serve` flag as
# arguments (`docker run ... fmnist:0.1.0 --shutdown-drain 10`).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/ requirements/
RUN python -m venv /opt/fmnist \
    && /opt/fmnist/bin/pip install --require-hashes --no-deps -r requirements/build.txt \
    && /opt/fmnist/bin/pip install --require-hashes --no-deps -r requirements/base.txt
COPY pyproject.toml README.md ./
COPY src/ src/
RUN /opt/fmnist/bin/pip install --no-deps --no-build-isolation . \
    && /opt/fmnist/bin/pip uninstall --yes setuptools

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 fmnist \
    && useradd --system --uid 10001 --gid fmnist --no-create-home --shell /usr/sbin/nologin fmnist
COPY --from=build /opt/fmnist /opt/fmnist
ENV PATH=/opt/fmnist/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FMNIST_PORT=8000 \
    FMNIST_WORKERS=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# exec: fmnist serve is PID 1 and gets SIGTERM itself (it drains every worker, then exits).
ENTRYPOINT ["/bin/sh", "-c", "exec fmnist serve --host 0.0.0.0 --port \"$FMNIST_PORT\" --workers \"$FMNIST_WORKERS\" \"$@\"", "fmnist-serve"]
