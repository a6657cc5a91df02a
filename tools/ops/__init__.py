"""Operations helpers: test-tool installers, topic creation, container healthchecks.

* ``python -m ops.tooling promtool chromium docker-compose``: make sure the Debian
  tools the deployment tests use are installed (apt-get, as root).
* ``python -m ops.topics``: create (and verify) every topic of :mod:`qbridge.topics`;
  the one-shot ``kafka-init`` container of docker-compose runs it.
* ``python -m ops.healthcheck``: the images' ``HEALTHCHECK`` (HTTP ``/healthz`` or gRPC health).
"""
