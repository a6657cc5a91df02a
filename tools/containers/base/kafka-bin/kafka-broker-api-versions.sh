#!/bin/bash
# The official image's script of the same name (the compose healthcheck calls it).
# A short-lived JVM: client compiler and serial GC start fastest.
exec java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j.configuration=file:/opt/kafka/tools-log4j.properties \
  -cp '/opt/kafka/libs/*' kafka.admin.BrokerApiVersionsCommand "$@"
