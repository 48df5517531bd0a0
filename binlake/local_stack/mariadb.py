"""A private MariaDB instance, the local stand-in for MySQL, captured by Debezium's MariaDB
connector as what it is (no version disguise: `mysql.flavor = mariadb`)."""

from __future__ import annotations

import getpass

import pymysql

from binlake.local_stack.executables import find_executable, run_setup_command
from binlake.settings import Settings

# What Debezium's binlog connectors need (MariaDB shows REPLICATION CLIENT as BINLOG MONITOR).
CDC_GRANTS = "SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT"
# On the signal table: binlake inserts signals as the CDC user, and Debezium writes (and with
# the insert_delete strategy deletes) its incremental snapshot watermarks there.
SIGNAL_TABLE_GRANTS = "INSERT, DELETE"
# The structure Debezium requires of a signal table: id, type, data, in this order.
SIGNAL_TABLE_COLUMNS = "id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT NULL"


class MariaDBInstance:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.state_dir.resolve() / "mariadb"
        self.datadir = self.home / "data"
        self.config_file = self.home / "my.cnf"
        self.socket = self.home / "mysqld.sock"

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        mysql = self.settings.mysql
        self.config_file.write_text(
            "\n".join(
                [
                    "[mysqld]",
                    f"datadir={self.datadir}",
                    f"socket={self.socket}",
                    f"pid-file={self.home / 'mysqld.pid'}",
                    f"port={mysql.port}",
                    f"bind-address={mysql.host}",
                    # mariadbd refuses to run as root unless told to; locally it runs as the caller.
                    f"user={getpass.getuser()}",
                    f"server_id={mysql.server_id}",
                    f"log_bin={self.home / 'binlog' / 'mariadb-bin'}",
                    "binlog_format=ROW",
                    "binlog_row_image=FULL",
                    "binlog_row_metadata=FULL",
                    "character-set-server=utf8mb4",
                    "collation-server=utf8mb4_general_ci",
                    "default-time-zone=+00:00",
                    "skip-name-resolve",
                    "innodb_buffer_pool_size=128M",
                    "innodb_flush_log_at_trx_commit=2",
                    # MySQL 8's default (MariaDB's is 16M): rows as large as production takes.
                    "max_allowed_packet=64M",
                    "",
                ]
            )
        )
        (self.home / "binlog").mkdir(exist_ok=True)

    def initialise_datadir(self) -> bool:
        """Create the system tables once; returns False if the datadir already existed."""
        if (self.datadir / "mysql").exists():
            return False
        run_setup_command(
            [
                find_executable(self.settings.local.mariadb_install_db),
                f"--defaults-file={self.config_file}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            "mariadb-install-db",
        )
        return True

    def server_command(self) -> list[str]:
        return [
            find_executable(self.settings.local.mariadbd),
            f"--defaults-file={self.config_file}",
        ]

    def admin_connection(self) -> pymysql.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def bootstrap(self) -> None:
        """Create the CDC user, a TCP admin login, the captured databases and the resync signal
        table (idempotent)."""
        mysql = self.settings.mysql
        with self.admin_connection() as conn, conn.cursor() as cur:
            _ensure_user(cur, mysql.user, "%", mysql.password.get_secret_value())
            cur.execute(f"GRANT {CDC_GRANTS} ON *.* TO %s@'%%'", (mysql.user,))
            _ensure_user(
                cur, mysql.admin_user, "127.0.0.1", mysql.admin_password.get_secret_value()
            )
            cur.execute(
                "GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1' WITH GRANT OPTION",
                (mysql.admin_user,),
            )
            for database in mysql.databases:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            signal_table = f"`{mysql.databases[0]}`.`{self.settings.resync.signal_table}`"
            cur.execute(f"CREATE TABLE IF NOT EXISTS {signal_table} ({SIGNAL_TABLE_COLUMNS})")
            cur.execute(f"GRANT {SIGNAL_TABLE_GRANTS} ON {signal_table} TO %s@'%%'", (mysql.user,))


def _ensure_user(cur: pymysql.cursors.Cursor, user: str, host: str, password: str) -> None:
    """Create `user`@`host` with `password`, or give an existing one that password."""
    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
    # CREATE ... IF NOT EXISTS keeps an old password; a changed setting must apply.
    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
