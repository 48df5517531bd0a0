"""The ClickHouse HTTP interface, in the subset BI clients use, over `LakeEngine`.

What it understands: the query by GET (`?query=`) or POST (the body, after `?query=` if both,
as ClickHouse joins them), `FORMAT` in the query or `default_format`, `database`, query
parameters `param_<name>` for `{name:Type}`, the user and password as basic auth, `user` and
`password` parameters or `X-ClickHouse-User` / `X-ClickHouse-Key` headers, `/ping` and `/`.
Other parameters (ClickHouse settings, `session_id`) are not applied: the endpoint is
session-less and its settings are fixed. Errors look like ClickHouse's (`Code: N.
DB::Exception: ...` and the X-ClickHouse-Exception-Code header), so clients show them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import socket
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from binlake.settings import SqlSettings
from binlake.sql.engine import LakeEngine, QueryFailed
from binlake.sql.guard import READONLY, RefusedQuery
from binlake.sql.views import DATABASE

log = logging.getLogger(__name__)

SERVER_NAME = "binlake"
AUTHENTICATION_FAILED = 516
# Settings that would lift the endpoint's restrictions; given as parameters they are refused.
RESTRICTING_SETTINGS = frozenset({"readonly", "allow_ddl", "allow_introspection_functions"})
_STATUS = {READONLY: 403, AUTHENTICATION_FAILED: 401, 62: 400, 60: 404, 81: 404, 456: 400}
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
}


def clickhouse_error(message: str, code: int, version: str) -> bytes:
    """`message` as ClickHouse's HTTP interface words an exception."""
    if message.startswith("Code: "):
        return f"{message}\n".encode()
    name = "READONLY" if code == READONLY else "AUTHENTICATION_FAILED"
    return f"Code: {code}. DB::Exception: {message}. ({name}) (version {version})\n".encode()


class SqlEndpoint(ThreadingHTTPServer):
    """The HTTP server: one engine, one user."""

    daemon_threads = True

    def __init__(self, engine: LakeEngine, sql: SqlSettings) -> None:
        self.engine = engine
        self.user = sql.user
        self.password = sql.password
        self.version = str(
            engine.query("SELECT version()", output_format="TSVRaw").data.strip(), "utf-8"
        )
        self.timezone = str(
            engine.query("SELECT timezone()", output_format="TSVRaw").data.strip(), "utf-8"
        )
        super().__init__((sql.host, sql.port), QueryHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def authenticated(self, user: str | None, password: str | None) -> bool:
        given_user = (user or "").encode()
        given_password = (password or "").encode()
        return hmac.compare_digest(given_user, self.user.encode()) & hmac.compare_digest(
            given_password, self.password.get_secret_value().encode()
        )


class QueryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SqlEndpoint

    def setup(self) -> None:
        super().setup()
        # Without it every answer waits for the client's delayed ACK (~40 ms per query here).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding in ("gzip", "deflate"):
            body = zlib.decompress(body, zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
        self._handle(body)

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        text = "\n".join(
            part for part in (params.get("query", ""), body.decode("utf-8")) if part.strip()
        )
        if url.path == "/ping" or (url.path in ("/", "") and not text):
            self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        user, password = self._credentials(params)
        if not self.server.authenticated(user, password):
            shown = user or "default"
            self._error(
                f"{shown}: Authentication failed: password is incorrect, or there is no user "
                "with such name",
                AUTHENTICATION_FAILED,
            )
            return
        lifted = sorted(RESTRICTING_SETTINGS & params.keys())
        if lifted:
            self._error(f"refused setting {', '.join(lifted)}: settings are fixed here", READONLY)
            return
        query_params = {k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")}
        output_format = (
            params.get("default_format")
            or self.headers.get("X-ClickHouse-Format")
            or "TabSeparated"
        )
        database = params.get("database") or self.headers.get("X-ClickHouse-Database") or DATABASE
        try:
            result = self.server.engine.query(
                text, output_format=output_format, params=query_params, database=database
            )
        except RefusedQuery as refused:
            self._error(str(refused), refused.code)
            return
        except QueryFailed as failed:
            self._error(str(failed), failed.code)
            return
        summary = {
            "read_rows": str(result.rows_read),
            "read_bytes": str(result.bytes_read),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": str(result.rows_read),
            "result_rows": "0",
            "result_bytes": str(len(result.data)),
            "elapsed_ns": str(int(result.elapsed_seconds * 1e9)),
        }
        self._send(
            200,
            result.data,
            {
                "Content-Type": _CONTENT_TYPES.get(result.format, "application/octet-stream"),
                "X-ClickHouse-Format": result.format,
                "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
            },
        )

    def _credentials(self, params: dict[str, str]) -> tuple[str | None, str | None]:
        authorization = self.headers.get("Authorization") or ""
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            user, _, password = decoded.partition(":")
            return user, password
        user = self.headers.get("X-ClickHouse-User") or params.get("user")
        password = self.headers.get("X-ClickHouse-Key") or params.get("password")
        return user, password

    def _error(self, message: str, code: int) -> None:
        body = clickhouse_error(message, code, self.server.version)
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(code),
        }
        if code == AUTHENTICATION_FAILED:
            headers["WWW-Authenticate"] = f'Basic realm="{SERVER_NAME}"'
        self._send(_STATUS.get(code, 500), body, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
            "X-ClickHouse-Query-Id": str(uuid.uuid4()),
            "X-ClickHouse-Timezone": self.server.timezone,
            "Content-Length": str(len(body)),
            **headers,
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(engine: LakeEngine, sql: SqlSettings) -> SqlEndpoint:
    """The endpoint bound to `sql.host`:`sql.port` (port 0: a free one); call
    `serve_forever()` on it."""
    return SqlEndpoint(engine, sql)
