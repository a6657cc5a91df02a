# Local stand-in for python:3.11-slim-bookworm, built from Debian packages only (used where
# no registry is reachable; see docs/deployment.md). `python` and `pip` are a venv's, as
# on the official image, so `pip install` works without touching Debian's own Python.
ARG DEBIAN_IMAGE=localhost/qbridge-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
# Extra CAs this machine trusts (its egress may inspect TLS); empty elsewhere.
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python3 python3-venv \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/python
ENV PATH=/opt/python/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    LANG=C.UTF-8
CMD ["python3"]
