# largeemb's container image: the tool in a virtual environment, run as a non-root user.
#
# Parameters: the base image (a slim CPython; faiss-cpu, numpy and scipy come as wheels),
# the user id (10001, what the Kubernetes manifests in jobs/ run as) and the image name,
# which the manifests use:
#   docker build -t your-registry/largeemb:0.1.0 .        (from the repository root)
# The install is the README's first command's, `pip install .` from this checkout
# (tests/test_jobs.py checks that they stay the same), plus the extras in EXTRAS: [s3] by default,
# so that s3:// inputs and --out work ([s3,gcs] for gs:// too, "" for none):
#   docker build --build-arg EXTRAS=[s3,gcs] -t your-registry/largeemb:0.1.0 .
# The command it runs: largeemb (give the subcommand: `docker run IMAGE evaluate ...`).
FROM python:3.11-slim

LABEL org.opencontainers.image.title="largeemb" org.opencontainers.image.version="0.1.0"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH HOME=/tmp DASK_TEMPORARY_DIRECTORY=/tmp

ARG EXTRAS=[s3]
COPY . /src
WORKDIR /src
RUN python -m venv /opt/venv && . /opt/venv/bin/activate && pip install ".${EXTRAS}" \
    && rm -rf /src \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin largeemb

WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["largeemb"]
CMD ["--help"]
