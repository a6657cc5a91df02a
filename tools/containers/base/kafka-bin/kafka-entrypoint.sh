#!/bin/bash
# Entry point of the Kafka stand-in. Like the official apache/kafka image: every KAFKA_*
# variable becomes a server property (KAFKA_FOO_BAR=x -> foo.bar=x; "__" -> "_",
# "___" -> "-"), the KRaft storage is formatted with CLUSTER_ID on the first start, and
# the broker runs in the foreground. `--print-config` only prints the properties.
set -euo pipefail

properties() {
  local var key
  while IFS='=' read -r var _; do
    case "$var" in
      KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_JMX_OPTS) ;;
      KAFKA_*)
        key=${var#KAFKA_}
        key=${key,,}
        key=${key//___/-}
        key=${key//__/@}
        key=${key//_/.}
        key=${key//@/_}
        printf '%s=%s\n' "$key" "${!var}"
        ;;
    esac
  done < <(env | LC_ALL=C sort)
}

if [ "${1:-}" = "--print-config" ]; then
  properties
  exit 0
fi
props=/opt/kafka/config/server.properties
properties >"$props"
: "${CLUSTER_ID:?CLUSTER_ID must be set (22 characters, base64url)}"
java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j.configuration=file:/opt/kafka/tools-log4j.properties \
  -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format \
  -t "$CLUSTER_ID" -c "$props" --ignore-formatted
# shellcheck disable=SC2086  # heap and extra options are word lists
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} ${KAFKA_OPTS:-} \
  -Dlog4j.configuration=file:/opt/kafka/log4j.properties \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
