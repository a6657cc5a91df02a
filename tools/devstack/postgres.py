"""A throw-away PostgreSQL cluster run from Debian's binaries.

PostgreSQL refuses to run as root, so when this process is root the cluster
files belong to the ``postgres`` system user and every server binary runs as
that user (``setpriv --reuid``).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from devstack import procs
from devstack.errors import DevstackError, PortInUseError
from devstack.service import DEFAULT_START_TIMEOUT, LocalService

logger = logging.getLogger(__name__)

#: Environment variable naming a PostgreSQL ``bin`` dir to use instead of Debian's.
BINDIR_ENV = "QBRIDGE_PG_BINDIR"
#: System user owning the cluster when the caller is root.
OS_USER = "postgres"
_DEBIAN_GLOB = "/usr/lib/postgresql/*/bin/initdb"
_APT_COMMAND = "apt-get update && apt-get install -y --no-install-recommends postgresql"


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin/initdb
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name)) or (0,)


def find_bindir() -> Path | None:
    """Locate PostgreSQL server binaries.

    Order: ``$QBRIDGE_PG_BINDIR``; the highest ``/usr/lib/postgresql/<v>/bin``
    (Debian's layout, preferred over whatever is in ``/usr/local/bin``);
    ``initdb`` on PATH.

    Returns:
        The ``bin`` dir holding ``initdb`` and ``postgres``, or None.
    """
    override = os.environ.get(BINDIR_ENV)
    if override:
        return Path(override)
    candidates = sorted((Path(p) for p in _glob(_DEBIAN_GLOB)), key=_version_key)
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern)


def _ensure_os_user() -> None:
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        logger.info("creating system user %s", OS_USER)
        procs.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                OS_USER,
            ],
            what="useradd",
        )


def ensure_postgres_installed() -> Path:
    """Return Debian's PostgreSQL ``bin`` dir, installing the package if needed.

    As root: ``apt-get update && apt-get install -y postgresql`` when no
    binaries are found, and creates the ``postgres`` system user if missing.

    Returns:
        The ``bin`` dir.

    Raises:
        DevstackError: If binaries are missing and this process is not root
            (the message gives the command to run), or apt fails.
    """
    bindir = find_bindir()
    if bindir is None:
        if os.geteuid() != 0:
            raise DevstackError(
                "PostgreSQL server binaries not found; install them with: "
                f"sudo sh -c '{_APT_COMMAND}'"
            )
        started = time.monotonic()
        logger.info("PostgreSQL not found; installing it with apt-get (takes a minute)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        procs.run(["apt-get", "update"], env=env, timeout=600, what="apt-get update")
        procs.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
            env=env,
            timeout=900,
            what="apt-get install postgresql",
        )
        bindir = find_bindir()
        if bindir is None:
            raise DevstackError(
                "apt-get installed postgresql but no initdb was found under /usr/lib/postgresql"
            )
        logger.info("installed PostgreSQL in %.0fs", time.monotonic() - started)
    for tool in ("initdb", "postgres"):
        if not (bindir / tool).is_file():
            raise DevstackError(
                f"{bindir / tool} missing (set ${BINDIR_ENV} to a PostgreSQL bin dir)"
            )
    if os.geteuid() == 0:
        _ensure_os_user()
    return bindir


class PostgresServer(LocalService):
    """A fresh PostgreSQL cluster on 127.0.0.1 with trust auth.

    Args:
        port: TCP port; 0 picks a free one.
        database: Database created after start-up (exposed by :attr:`dsn`).
        user: Database superuser name.
        fsync: Keep ``fsync``/``full_page_writes`` on. Off by default for
            speed: they only protect against an OS crash or power loss; a
            killed server (SIGKILL) still loses no acknowledged commit,
            because ``synchronous_commit`` always stays on.
        extra_settings: More ``-c name=value`` server settings.
        bin_dir: PostgreSQL ``bin`` dir (default :func:`ensure_postgres_installed`).
        base_dir: Parent of the temp work dir (default: system temp dir).
        start_timeout: Default seconds allowed for a start.
    """

    kind = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown, what `pg_ctl stop -m fast` sends

    def __init__(
        self,
        *,
        port: int = 0,
        database: str = "qbridge",
        user: str = "postgres",
        fsync: bool = False,
        extra_settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
        base_dir: Path | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        super().__init__(start_timeout=start_timeout, base_dir=base_dir)
        self._fixed_port = port
        self.port = port
        self.database = database
        self.user = user
        self.fsync = fsync
        self.extra_settings = dict(extra_settings or {})
        self._bin_dir = bin_dir
        self._run_as = OS_USER if os.geteuid() == 0 else None

    def __repr__(self) -> str:
        return f"PostgresServer(dsn={self.dsn!r})"

    @property
    def host(self) -> str:
        """TCP host the server listens on."""
        return "127.0.0.1"

    @property
    def dsn(self) -> str:
        """URL (libpq) of :attr:`database`, e.g. ``postgresql://postgres@127.0.0.1:5433/qbridge``."""
        return self.dsn_for(self.database)

    def dsn_for(self, database: str, user: str | None = None, password: str | None = None) -> str:
        """Return the libpq URL of another database (or as another user) on this server.

        Args:
            database: Database name.
            user: Login role (default: the superuser).
            password: Its password, if any.

        Returns:
            The URL.
        """
        auth = user or self.user
        if password:
            auth += f":{password}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (kept across :meth:`restart`)."""
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory of the server's unix socket."""
        return self.workdir / "sock"

    @property
    def log_path(self) -> Path:
        """The server's log (its stderr)."""
        return self.workdir / "postgres.log"

    # -------------------------------------------------------------- hooks

    def _choose_ports(self, retry: bool) -> None:
        if self._ports_locked:
            return
        if retry and self._fixed_port:
            raise DevstackError(f"postgres: fixed port {self.port} is in use")
        self.port = self._fixed_port or procs.free_ports(1)[0]

    def _prepare(self, workdir: Path) -> None:
        if self._bin_dir is None:
            self._bin_dir = ensure_postgres_installed()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(exist_ok=True)
        self.log_path.touch()
        if self._run_as is not None:
            procs.chown_tree(workdir, self._run_as)
        started = time.monotonic()
        procs.run(
            [
                str(self._bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
            ],
            run_as=self._run_as,
            cwd=workdir,
            env=self._env(),
            timeout=180,
            what="initdb",
        )  # fmt: skip
        logger.debug("initdb %s took %.1fs", self.data_dir, time.monotonic() - started)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _settings(self) -> dict[str, str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on" if self.fsync else "off",
            # Never synchronous_commit=off: a killed server would lose commits it
            # acknowledged, which would make outage tests lie.
            "synchronous_commit": "on",
            "full_page_writes": "on" if self.fsync else "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        settings.update(self.extra_settings)
        return settings

    def _launch(self, workdir: Path) -> subprocess.Popen[bytes]:
        assert self._bin_dir is not None
        cmd = [str(self._bin_dir / "postgres"), "-D", str(self.data_dir)]
        for name, value in self._settings().items():
            cmd += ["-c", f"{name}={value}"]
        logger.info(
            "starting PostgreSQL (%s) on %s:%d", self._bin_dir.parent.name, self.host, self.port
        )
        # PDEATHSIG=SIGQUIT: immediate shutdown if this process dies unexpectedly.
        return procs.spawn(
            cmd,
            log_file=self.log_path,
            run_as=self._run_as,
            pdeathsig=signal.SIGQUIT,
            cwd=workdir,
            env=self._env(),
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        import psycopg

        started = time.monotonic()
        next_progress = started + 10
        last_error: Exception | None = None
        while True:
            code = proc.poll()
            if code is not None:
                text = procs.tail(self.log_path, 50)
                if "could not bind" in text or "Address already in use" in text:
                    raise PortInUseError(f"postgres: port {self.port} already in use")
                raise self._failure(f"postgres exited with code {code} during start-up")
            now = time.monotonic()
            if now >= deadline:
                raise self._failure(
                    f"not ready after {now - started:.0f}s (last error: {last_error})"
                )
            if now >= next_progress:
                logger.info(
                    "still waiting for PostgreSQL on port %d (%.0fs)", self.port, now - started
                )
                next_progress = now + 10
            try:
                with psycopg.connect(
                    self.dsn_for("postgres"), connect_timeout=2, autocommit=True
                ) as conn:
                    row = conn.execute("SELECT current_setting('data_directory')").fetchone()
                if row is not None and Path(row[0]) == self.data_dir:
                    return
                # Another server took our port between probe and bind; ours will
                # exit with a bind error, reported above on the next round.
                last_error = DevstackError(f"port {self.port} is served by another cluster ({row})")
            except psycopg.OperationalError as exc:  # starting up / not listening yet
                last_error = exc
            time.sleep(0.1)

    def _after_ready(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
                logger.debug("created database %s", self.database)
