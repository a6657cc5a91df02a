#!/bin/bash
# The official image's script of the same name (the compose healthcheck calls it).
exec java -Xmx128m -Dlog4j.configuration=file:/opt/kafka/tools-log4j.properties \
  -cp '/opt/kafka/libs/*' kafka.admin.BrokerApiVersionsCommand "$@"
