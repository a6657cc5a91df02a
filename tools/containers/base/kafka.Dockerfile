# Local stand-in for apache/kafka (same version) from Debian's JRE and the broker jars the
# project resolves from Maven Central (tools/kafka/pom.xml). Like the official image it
# turns KAFKA_* variables into server.properties (KAFKA_LOG_DIRS -> log.dirs) and formats
# the KRaft storage with CLUSTER_ID on the first start.
ARG DEBIAN_IMAGE=localhost/qbridge-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 appuser \
 && useradd --uid 1000 --gid 1000 --home-dir /home/appuser --create-home appuser \
 && install -d -o appuser -g appuser /var/lib/kafka/data /opt/kafka/config
COPY libs/ /opt/kafka/libs/
COPY bin/ /opt/kafka/bin/
COPY log4j.properties tools-log4j.properties /opt/kafka/
ENV PATH=/opt/kafka/bin:$PATH \
    LANG=C.UTF-8
USER appuser
VOLUME /var/lib/kafka/data
EXPOSE 9092
ENTRYPOINT ["/opt/kafka/bin/kafka-entrypoint.sh"]
