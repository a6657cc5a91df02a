"""A real single-node Apache Kafka (KRaft, combined broker + controller).

The broker's classpath comes from Maven Central through ``tools/kafka/pom.xml``
(:func:`ensure_jars`); :class:`KafkaBroker` runs it as a plain ``java`` child.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import paths, procs
from devstack.errors import DevstackError, PortInUseError
from devstack.service import DEFAULT_START_TIMEOUT, LocalService

logger = logging.getLogger(__name__)

#: Kafka version pinned in tools/kafka/pom.xml (checked against the pom).
KAFKA_VERSION = "3.9.1"
#: Environment variable replacing the default JVM heap options.
HEAP_OPTS_ENV = "QBRIDGE_KAFKA_HEAP_OPTS"
GC_OPTS_ENV = "QBRIDGE_KAFKA_GC_OPTS"
#: The serial collector: a dev broker's heap is small (512 MiB) and its young collections
#: take a few ms, while G1's concurrent and refinement threads cost ~0.3 ms of CPU per
#: pipeline job on a 2-core machine (measured with bench/bench_pipeline.py's CPU table).
DEFAULT_GC_OPTS: tuple[str, ...] = ("-XX:+UseSerialGC",)
#: Default JVM heap for the broker (the machines have 2 cores, 24 GiB).
DEFAULT_HEAP_OPTS: tuple[str, ...] = ("-Xms256m", "-Xmx512m")

KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
_MARKER = ".complete"
_INSTALL_HINT = "apt-get install -y openjdk-17-jre-headless maven"

#: Broker settings a caller may override through ``extra_config``.
DEFAULT_BROKER_CONFIG: Mapping[str, str] = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "10",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "group.initial.rebalance.delay.ms": "0",
    "unclean.leader.election.enable": "false",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "background.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.retention.hours": "24",
    # Same as qbridge.topics.TOPIC_MAX_MESSAGE_BYTES (1 MiB producer limit + batch framing):
    # topics created by other tools get the limit the producers are configured for.
    "message.max.bytes": "1114112",
    "replica.fetch.max.bytes": "1114112",
}


# ------------------------------------------------------------------- jars


def pom_path() -> Path:
    """Return ``tools/kafka/pom.xml``."""
    return paths.repo_root() / "tools" / "kafka" / "pom.xml"


def jar_dir(version: str = KAFKA_VERSION) -> Path:
    """Return where the broker jars are cached.

    Args:
        version: Kafka version.

    Returns:
        ``$QBRIDGE_CACHE_DIR/kafka/<version>/lib`` (default cache root:
        ``<repo>/.cache``). Not created.
    """
    return paths.cache_root() / "kafka" / version / "lib"


def _pom_digest(pom: Path) -> str:
    text = pom.read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    if match is None or match.group(1).strip() != KAFKA_VERSION:
        found = match.group(1) if match else "nothing"
        raise DevstackError(
            f"{pom} pins kafka.version={found} but devstack.kafka.KAFKA_VERSION={KAFKA_VERSION}"
        )
    return hashlib.sha256(text.encode()).hexdigest()


def _jars_complete(lib: Path, digest: str) -> bool:
    try:
        marker = json.loads((lib / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("pom_sha256") != digest:
        return False
    return all((lib / name).is_file() for name in marker.get("jars", []))


def require_tool(name: str) -> str:
    """Return the path of ``java`` or ``mvn``, or fail with an install hint.

    Args:
        name: Executable name.

    Returns:
        Its absolute path.

    Raises:
        DevstackError: If it is not on PATH.
    """
    found = shutil.which(name)
    if found is None and name == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        found = str(candidate) if candidate.is_file() else None
    if found is None:
        raise DevstackError(
            f"`{name}` not found on PATH; the local Kafka needs Java 17+ and Maven "
            f"(Debian: `{_INSTALL_HINT}`)"
        )
    return found


def ensure_jars(lib_dir: Path | None = None, *, force: bool = False) -> Path:
    """Materialise the broker classpath from Maven Central, once.

    Runs ``mvn -q -B dependency:copy-dependencies`` on ``tools/kafka/pom.xml``
    into a staging dir, then renames it into place and writes a marker, so a
    half-finished download is never used. Safe to call concurrently (file lock).

    Args:
        lib_dir: Target dir (default :func:`jar_dir`).
        force: Download again even if the cache looks complete.

    Returns:
        The directory holding every jar.

    Raises:
        DevstackError: If java/mvn are missing or Maven fails.
    """
    lib = lib_dir if lib_dir is not None else jar_dir()
    pom = pom_path()
    digest = _pom_digest(pom)
    if not force and _jars_complete(lib, digest):
        return lib
    require_tool("java")
    mvn = require_tool("mvn")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with open(lib.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and _jars_complete(lib, digest):
            return lib
        started = time.monotonic()
        logger.info("fetching Kafka %s jars with Maven into %s", KAFKA_VERSION, lib)
        staging = lib.parent / f"{lib.name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        procs.run(
            [
                mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
            ],
            cwd=pom.parent,
            timeout=1200,
            what="mvn dependency:copy-dependencies",
        )  # fmt: skip
        jars = sorted(p.name for p in staging.glob("*.jar"))
        if f"kafka_2.13-{KAFKA_VERSION}.jar" not in jars:
            raise DevstackError(
                f"Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is missing in {staging}"
            )
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        (lib / _MARKER).write_text(
            json.dumps({"version": KAFKA_VERSION, "pom_sha256": digest, "jars": jars}, indent=1)
        )
        logger.info("fetched %d jars in %.1fs", len(jars), time.monotonic() - started)
    return lib


# -------------------------------------------------------------------- auth

#: SASL mechanism of the client listener when authentication is on.
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: KRaft's ACL authorizer.
AUTHORIZER_CLASS = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def _password() -> str:
    # URL-safe characters only: no quoting issues in JAAS or --add-scram.
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class KafkaAuth:
    """SASL/SCRAM users and ACLs of a locked-down broker.

    The client listener becomes ``SASL_PLAINTEXT`` with SCRAM; the controller
    listener (127.0.0.1 only) authenticates the broker with SASL/PLAIN. ACLs are
    enforced by KRaft's StandardAuthorizer: the admin is the only super user, every
    other principal gets what ``qbridge.bus.acls.SERVICE_ACCESS`` grants it.

    Attributes:
        admin_user: Super user (the devstack itself, tests, ``make run`` tooling).
        admin_password: Its password.
        users: SCRAM users to create at format time: name -> password.
        create_topics: Create the pipeline's topics once the broker is ready
            (services may not create topics themselves).
    """

    admin_user: str = "admin"
    admin_password: str = field(default_factory=_password, repr=False)
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    create_topics: bool = True

    @classmethod
    def for_services(cls) -> KafkaAuth:
        """One principal with a random password per service of ``SERVICE_ACCESS``.

        Returns:
            The auth description.
        """
        from qbridge.bus.acls import SERVICE_ACCESS

        return cls(users={a.principal: _password() for a in SERVICE_ACCESS.values()})

    def scram_args(self) -> list[str]:
        """``kafka-storage format`` arguments creating every SCRAM credential."""
        creds = {self.admin_user: self.admin_password, **self.users}
        args: list[str] = []
        for name, password in creds.items():
            args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        return args

    def broker_properties(self, admin_jaas: str) -> dict[str, str]:
        """``server.properties`` entries for authentication and authorization.

        Args:
            admin_jaas: ``username=... password=...`` of the admin, JAAS syntax.

        Returns:
            The entries.
        """
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'{admin_jaas} user_{self.admin_user}="{self.admin_password}";'
        )
        scram = f"org.apache.kafka.common.security.scram.ScramLoginModule required {admin_jaas};"
        return {
            "listener.security.protocol.map": (
                "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": scram,
            "authorizer.class.name": AUTHORIZER_CLASS,
            "super.users": f"User:{self.admin_user}",
            "allow.everyone.if.no.acl.found": "false",
        }


# ------------------------------------------------------------------ broker


def new_cluster_id() -> str:
    """Return a fresh KRaft cluster id.

    Same format as ``kafka-storage random-uuid`` (URL-safe base64 of a random
    UUID, never starting with ``-``) without paying for a JVM start.

    Returns:
        The 22-character id.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaBroker(LocalService):
    """One KRaft node acting as broker and controller on 127.0.0.1.

    Example:
        >>> with KafkaBroker() as broker:  # doctest: +SKIP
        ...     producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

    Args:
        port: Client (PLAINTEXT) port; 0 picks a free one.
        controller_port: KRaft controller port; 0 picks a free one.
        num_partitions: Default partition count of new topics.
        auto_create_topics: Value of ``auto.create.topics.enable``.
        extra_config: More ``server.properties`` entries (override defaults).
        heap_opts: JVM heap flags (default ``$QBRIDGE_KAFKA_HEAP_OPTS`` or
            ``-Xms256m -Xmx512m``). The collector: ``$QBRIDGE_KAFKA_GC_OPTS`` or
            ``-XX:+UseSerialGC`` (see :data:`DEFAULT_GC_OPTS`).
        lib_dir: Jar dir (default: :func:`ensure_jars`, fetching if needed).
        base_dir: Parent of the temp work dir (default: system temp dir).
        start_timeout: Default seconds allowed for a start.
        auth: Lock the broker down with SASL/SCRAM and ACLs (default: plaintext,
            no authorization).
    """

    kind = "kafka"
    stop_timeout = 60.0

    def __init__(
        self,
        *,
        port: int = 0,
        controller_port: int = 0,
        num_partitions: int = 1,
        auto_create_topics: bool = False,
        extra_config: Mapping[str, str] | None = None,
        heap_opts: Sequence[str] | None = None,
        lib_dir: Path | None = None,
        base_dir: Path | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        auth: KafkaAuth | None = None,
    ) -> None:
        super().__init__(start_timeout=start_timeout, base_dir=base_dir)
        self.auth = auth
        self._fixed_port = port
        self._fixed_controller_port = controller_port
        self.port = port
        self.controller_port = controller_port
        self.num_partitions = num_partitions
        self.auto_create_topics = auto_create_topics
        self.extra_config = dict(extra_config or {})
        env_heap = os.environ.get(HEAP_OPTS_ENV)
        self.heap_opts = list(
            heap_opts
            if heap_opts is not None
            else (shlex.split(env_heap) if env_heap else DEFAULT_HEAP_OPTS)
        )
        env_gc = os.environ.get(GC_OPTS_ENV)
        self.gc_opts = shlex.split(env_gc) if env_gc else list(DEFAULT_GC_OPTS)
        self._lib_dir = lib_dir
        self.cluster_id: str | None = None

    def __repr__(self) -> str:
        return f"KafkaBroker(bootstrap_servers={self.bootstrap_servers!r})"

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for ``bootstrap.servers`` (valid once started)."""
        return f"127.0.0.1:{self.port}"

    @property
    def security_protocol(self) -> str:
        """``PLAINTEXT``, or ``SASL_PLAINTEXT`` when :attr:`auth` is set."""
        return "PLAINTEXT" if self.auth is None else "SASL_PLAINTEXT"

    def client_config(self, user: str | None = None) -> dict[str, str]:
        """Librdkafka settings to reach this broker.

        Args:
            user: SCRAM user (default: the admin when :attr:`auth` is set).

        Returns:
            ``bootstrap.servers`` plus, with auth, the SASL settings.

        Raises:
            DevstackError: Unknown user.
        """
        return {k.lower().replace("_", "."): v for k, v in self._kafka_env(user).items()}

    def service_env(self, user: str | None = None) -> dict[str, str]:
        """``KAFKA_*`` environment variables (``qbridge.bus.KafkaSettings``) for a client.

        Args:
            user: SCRAM user (default: the admin when :attr:`auth` is set).

        Returns:
            ``KAFKA_BOOTSTRAP_SERVERS`` plus, with auth, protocol, mechanism and credentials.

        Raises:
            DevstackError: Unknown user.
        """
        return {f"KAFKA_{k}": v for k, v in self._kafka_env(user).items()}

    def _kafka_env(self, user: str | None) -> dict[str, str]:
        env = {"BOOTSTRAP_SERVERS": self.bootstrap_servers}
        if self.auth is None:
            return env
        name = user or self.auth.admin_user
        password = (
            self.auth.admin_password if name == self.auth.admin_user else self.auth.users.get(name)
        )
        if password is None:
            raise DevstackError(f"kafka: no SCRAM user {name!r} on this broker")
        env.update(
            SECURITY_PROTOCOL=self.security_protocol,
            SASL_MECHANISM=SCRAM_MECHANISM,
            SASL_USERNAME=name,
            SASL_PASSWORD=password,
        )
        return env

    @property
    def log_path(self) -> Path:
        """The broker's log4j log file."""
        return self.workdir / "server.log"

    @property
    def stdout_path(self) -> Path:
        """The JVM's stdout/stderr (crashes before log4j starts land here)."""
        return self.workdir / "kafka.out"

    @property
    def data_dir(self) -> Path:
        """The broker's ``log.dirs`` (kept across :meth:`restart`)."""
        return self.workdir / "data"

    # -------------------------------------------------------------- hooks

    def _choose_ports(self, retry: bool) -> None:
        if self._ports_locked:
            return
        if retry and self._fixed_port and self._fixed_controller_port:
            raise DevstackError(f"kafka: fixed ports {self.port}/{self.controller_port} are in use")
        port, cport = procs.free_ports(2)
        self.port = self._fixed_port or port
        self.controller_port = self._fixed_controller_port or cport

    def _server_properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Static voters (not --standalone): the ports live only in this file,
            # so a port-race retry needs no re-format.
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.num_partitions),
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            **DEFAULT_BROKER_CONFIG,
        }
        if self.auth is not None:
            listener = f"SASL_PLAINTEXT://127.0.0.1:{self.port}"
            props["listeners"] = f"{listener},CONTROLLER://127.0.0.1:{self.controller_port}"
            props["advertised.listeners"] = listener
            admin_jaas = f'username="{self.auth.admin_user}" password="{self.auth.admin_password}"'
            props.update(self.auth.broker_properties(admin_jaas))
        props.update(self.extra_config)
        return props

    def _prepare(self, workdir: Path) -> None:
        if self._lib_dir is None:
            self._lib_dir = ensure_jars()
        props = self._server_properties()
        (workdir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (workdir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={workdir / 'server.log'}\n"
            "log4j.appender.file.Append=true\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.state.change.logger=WARN\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.kafka.log.LogCleaner=WARN\n"
        )
        meta = self.data_dir / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    self.cluster_id = line.partition("=")[2].strip()
            return
        self.cluster_id = new_cluster_id()
        procs.run(
            [
                *self._java_base(short_lived=True), STORAGE_TOOL_CLASS, "format",
                "-t", self.cluster_id, "-c", str(workdir / "server.properties"),
                *(self.auth.scram_args() if self.auth is not None else []),
            ],
            cwd=workdir,
            timeout=120,
            what="kafka storage format",
        )  # fmt: skip
        logger.debug("formatted %s (cluster id %s)", self.data_dir, self.cluster_id)

    def _java_base(self, *, short_lived: bool) -> list[str]:
        assert self._lib_dir is not None and self._workdir is not None
        jvm = (
            ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
            if short_lived
            else [
                *self.heap_opts,
                *self.gc_opts,
                "-XX:+ExitOnOutOfMemoryError",
            ]
        )
        return [
            require_tool("java"),
            *jvm,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self._workdir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self._workdir}",
            "-cp",
            f"{self._lib_dir}/*",
        ]

    def _launch(self, workdir: Path) -> subprocess.Popen[bytes]:
        cmd = [
            *self._java_base(short_lived=False),
            KAFKA_MAIN_CLASS,
            str(workdir / "server.properties"),
        ]
        logger.info(
            "starting Kafka %s on %s (controller :%d)",
            KAFKA_VERSION,
            self.bootstrap_servers,
            self.controller_port,
        )
        return procs.spawn(cmd, log_file=self.stdout_path, cwd=workdir)

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        from confluent_kafka.admin import AdminClient  # heavy import, only when used

        quiet = logging.getLogger(f"{__name__}.librdkafka")
        quiet.setLevel(logging.CRITICAL)
        config: dict[str, Any] = {
            **self.client_config(),
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 2000,
            "logger": quiet,  # silence "connection refused" noise while booting
        }
        admin = AdminClient(config)
        started = time.monotonic()
        next_progress = started + 10
        last_error: Exception | None = None
        while True:
            code = proc.poll()
            if code is not None:
                self._raise_died(code)
            now = time.monotonic()
            if now >= deadline:
                raise self._failure(
                    f"not ready after {now - started:.0f}s (last error: {last_error})",
                    self.stdout_path,
                )
            if now >= next_progress:
                logger.info(
                    "still waiting for Kafka on %s (%.0fs)", self.bootstrap_servers, now - started
                )
                next_progress = now + 10
            try:
                metadata = admin.list_topics(timeout=min(2.0, max(0.1, deadline - now)))
                if metadata.brokers and metadata.cluster_id == self.cluster_id:
                    return
                if metadata.cluster_id not in (None, self.cluster_id):
                    # Another broker took our port between probe and bind.
                    last_error = DevstackError(
                        f"foreign cluster {metadata.cluster_id} on {self.port}"
                    )
            except Exception as exc:  # KafkaException while the broker boots
                last_error = exc
            time.sleep(0.2)

    def _after_ready(self) -> None:
        if self.auth is None:
            return
        from qbridge.bus import KafkaSettings, ensure_topics
        from qbridge.bus.acls import SERVICE_ACCESS
        from qbridge.bus.admin import apply_acls

        admin = KafkaSettings.model_validate(
            {k.lower(): v for k, v in self._kafka_env(None).items()}
        )
        if self.auth.create_topics:
            ensure_topics(admin)
        known = set(self.auth.users)
        apply_acls(admin, [a for a in SERVICE_ACCESS.values() if a.principal in known])

    def _raise_died(self, code: int) -> None:
        text = procs.tail(self.log_path, 200) + procs.tail(self.stdout_path, 200)
        if "Address already in use" in text or "BindException" in text:
            raise PortInUseError(
                f"kafka: port {self.port} or {self.controller_port} already in use"
            )
        raise self._failure(
            f"broker process exited with code {code} during start-up", self.stdout_path
        )
