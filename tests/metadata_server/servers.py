"""Real database servers for the tests, from Debian's packages: a PostgreSQL or
MariaDB server in a temporary folder, on a free loopback port, for one test
session. Both refuse to run as root, and CI runs as root: then the server runs
as the package's system user (postgres, mysql), which owns the folder.
"""
import dataclasses
import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import ClassVar

USER = "taxi"  # the role / account the pipeline connects as
PASSWORD = "test-password-4f1c"  # only ever passed by PGPASSWORD / MYSQL_PWD
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_program(name: str, patterns: tuple[str, ...]) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(path for pattern in patterns for path in glob.glob(pattern))
    return candidates[-1] if candidates else None


def _as_user(system_user: str) -> list[str]:
    """The command prefix that runs a server program as an unprivileged user."""
    if os.geteuid() != 0:
        return []
    # setpriv execs the program itself (no process in between), so signals and
    # exit codes reach the server directly.
    return ["setpriv", f"--reuid={system_user}", f"--regid={system_user}", "--init-groups", "--"]


def _private_folder(system_user: str, prefix: str) -> pathlib.Path:
    # Not pytest's tmp_path: its parents are root's and closed to other users.
    folder = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        account = pwd.getpwnam(system_user)
        os.chown(folder, account.pw_uid, account.pw_gid)
    return folder


def _run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")
    return done


@dataclasses.dataclass
class Server:
    folder: pathlib.Path  # data, socket and log; deleted when it stops
    port: int
    host: ClassVar[str] = "127.0.0.1"
    user: ClassVar[str] = USER
    password: ClassVar[str] = PASSWORD
    scheme: ClassVar[str]
    password_variable: ClassVar[str]  # where the server's clients look for it

    def url(self, database: str) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{database}"

    def environment(self, **extra) -> dict:
        """A command's environment: the password where the client looks for it."""
        return {**os.environ, self.password_variable: self.password, **extra}


@dataclasses.dataclass
class PostgreSQLServer(Server):
    bin_dir: pathlib.Path
    scheme: ClassVar[str] = "postgresql"
    password_variable: ClassVar[str] = "PGPASSWORD"

    def connect(self, dbname: str = "postgres"):
        import psycopg
        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, dbname=dbname, autocommit=True)


def start_postgresql() -> PostgreSQLServer | None:
    """None if Debian's postgresql package is not installed. Its programs run in
    the server's folder, which its user can enter (a CI clone under /root may not be)."""
    initdb = find_program("initdb", ("/usr/lib/postgresql/*/bin/initdb",))
    if initdb is None:
        return None
    bin_dir = pathlib.Path(initdb).resolve().parent
    system_user = "postgres"
    folder = _private_folder(system_user, "taxi-postgresql-")
    password_file = folder / "password"
    password_file.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(password_file, system_user)
    as_user = _as_user(system_user)
    # scram-sha-256 for every connection, so the tests prove the password path.
    _run(as_user + [initdb, "-D", str(folder / "data"), "-U", USER,
                    f"--pwfile={password_file}", "--auth=scram-sha-256", "--no-sync",
                    "--encoding=UTF8", "--locale=C"], cwd=folder)
    password_file.unlink()
    port = free_port()
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
               f"-c unix_socket_directories={folder} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
    _run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(folder / "data"),
                    "-l", str(folder / "server.log"), "-o", options, "-w",
                    "-t", str(START_TIMEOUT_SECONDS), "start"], cwd=folder)
    return PostgreSQLServer(folder, port, bin_dir)


def stop_postgresql(server: PostgreSQLServer):
    subprocess.run(_as_user("postgres") + [str(server.bin_dir / "pg_ctl"), "-D",
                                           str(server.folder / "data"), "-m", "immediate",
                                           "-w", "stop"],
                   capture_output=True, timeout=60, cwd=server.folder)
    shutil.rmtree(server.folder, ignore_errors=True)


@dataclasses.dataclass
class MySQLServer(Server):
    process: subprocess.Popen
    scheme: ClassVar[str] = "mysql"
    password_variable: ClassVar[str] = "MYSQL_PWD"


def start_mysql() -> MySQLServer | None:
    """A MariaDB server (Debian's mariadb-server); None if not installed."""
    server = find_program("mariadbd", ("/usr/sbin/mariadbd",))
    install_db = find_program("mariadb-install-db", ("/usr/bin/mariadb-install-db",))
    client = find_program("mariadb", ("/usr/bin/mariadb",))
    if not (server and install_db and client):
        return None
    system_user = "mysql"
    folder = _private_folder(system_user, "taxi-mariadb-")
    as_user = _as_user(system_user)
    _run(as_user + [install_db, "--no-defaults", f"--datadir={folder / 'data'}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"], cwd=folder)
    port, socket_path = free_port(), folder / "server.sock"
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        as_user + [server, "--no-defaults", f"--datadir={folder / 'data'}",
                   f"--socket={socket_path}", f"--port={port}", "--bind-address=127.0.0.1",
                   f"--pid-file={folder / 'server.pid'}", "--skip-log-bin",
                   "--innodb-buffer-pool-size=16M", "--skip-name-resolve"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    deadline = time.time() + START_TIMEOUT_SECONDS
    while True:
        ping = subprocess.run([client, "--no-defaults", f"--socket={socket_path}", "-u", "root",
                               "-e", "SELECT 1"], capture_output=True)
        if ping.returncode == 0:
            break
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError(f"MariaDB did not start: {(folder / 'server.log').read_text()}")
        time.sleep(0.2)
    _run([client, "--no-defaults", f"--socket={socket_path}", "-u", "root", "-e",
          f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; "
          f"GRANT ALL ON *.* TO '{USER}'@'%';"])
    return MySQLServer(folder, port, process)


def stop_mysql(server: MySQLServer):
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.folder, ignore_errors=True)
