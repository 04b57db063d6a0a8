"""Requests, responses, key-value, config and SQL for a Nimbus function in Python.

A small layer over the bindings componentize-py generates from `wit/`
(`wasi:http`, `wasi:keyvalue`, `wasi:config`, Spin's `spin:sqlite` and
`spin:postgres`): a handler takes a `Request`
and returns a `Response`, and `http_handler` turns it into the
`IncomingHandler` class the component exports.

    import nimbus

    def hello(request: nimbus.Request) -> nimbus.Response:
        return nimbus.Response(200, f"Hello, {request.params['name']}!\\n")

    IncomingHandler = nimbus.http_handler(hello)
"""

import datetime
import decimal
import json
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union
from urllib.parse import parse_qs, unquote, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import atomics, wasi_config_store
from wit_world.imports import wasi_http_types as http
from wit_world.imports import wasi_keyvalue_store
from wit_world.imports import postgres, sqlite
from wit_world.imports.streams import StreamError_Closed

# Nimbus passes each route parameter in a header with this prefix.
PARAM_PREFIX = "x-nimbus-param-"
# The most one `blocking-write-and-flush` takes.
WRITE_CHUNK = 4096


class Error(Exception):
    """A Nimbus call that failed, such as opening a store the manifest does
    not grant. Raised out of a handler, it answers 500."""


@dataclass
class Request:
    method: str
    path: str
    # Each query parameter's values, in order.
    query: Dict[str, List[str]]
    # Header names in lower case; a repeated header's first value.
    headers: Dict[str, str]
    # The route's parameters: `:name` in `GET /hello/:name`.
    params: Dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    # Text is sent as UTF-8, as `text/plain` unless `headers` say otherwise.
    body: Union[str, bytes] = b""
    headers: Dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(value, status: int = 200) -> "Response":
        return Response(status, json.dumps(value), {"content-type": "application/json"})


class Store:
    """A key-value store the manifest grants with `kv = ["name"]`."""

    def __init__(self, bucket: wasi_keyvalue_store.Bucket):
        self._bucket = bucket

    @staticmethod
    def open(name: str) -> "Store":
        return Store(_call(wasi_keyvalue_store.open, name))

    def get(self, key: str) -> Optional[bytes]:
        return _call(self._bucket.get, key)

    def set(self, key: str, value: Union[str, bytes]) -> None:
        if isinstance(value, str):
            value = value.encode("utf-8")
        _call(self._bucket.set, key, value)

    def delete(self, key: str) -> None:
        _call(self._bucket.delete, key)

    def exists(self, key: str) -> bool:
        return _call(self._bucket.exists, key)

    def increment(self, key: str, delta: int = 1) -> int:
        """Adds `delta` to the counter at `key` in one atomic step and returns
        the new value."""
        return _call(atomics.increment, self._bucket, key, delta)


class Database:
    """A SQLite database the manifest grants with `sqlite = ["name"]`
    (Spin's `spin:sqlite` interface). Its tables come from the migrations
    under `[sqlite.<name>]`; a transaction still open when the request ends
    is rolled back."""

    def __init__(self, connection: sqlite.Connection):
        self._connection = connection

    @staticmethod
    def open(name: str) -> "Database":
        return Database(_call(sqlite.Connection.open, name))

    def execute(self, statement: str, params=()) -> List[Dict[str, object]]:
        """Runs one statement with `params` filling its `?` in order (None,
        int, float, str or bytes) and returns its rows, each a dict from
        column name to value."""
        result = _call(self._connection.execute, statement, [_sql_value(p) for p in params])
        return [
            dict(zip(result.columns, (_python_value(v) for v in row.values)))
            for row in result.rows
        ]

    def last_insert_rowid(self) -> int:
        """The rowid of this connection's last successful INSERT."""
        return self._connection.last_insert_rowid()

    def changes(self) -> int:
        """The rows changed by this connection's last INSERT, UPDATE or DELETE."""
        return self._connection.changes()


def _sql_value(value) -> sqlite.Value:
    if value is None:
        return sqlite.Value_Null()
    if isinstance(value, (bool, int)):
        return sqlite.Value_Integer(int(value))
    if isinstance(value, float):
        return sqlite.Value_Real(value)
    if isinstance(value, str):
        return sqlite.Value_Text(value)
    if isinstance(value, (bytes, bytearray)):
        return sqlite.Value_Blob(bytes(value))
    raise TypeError(f"a SQL parameter is None, int, float, str or bytes, not {type(value).__name__}")


def _python_value(value: sqlite.Value):
    return None if isinstance(value, sqlite.Value_Null) else value.value


class Postgres:
    """A PostgreSQL database the manifest grants with
    `postgres = { name = "URL" }` (Spin's `spin:postgres` interface): a
    connection from the grant's pool, the function's own until the request
    ends (a transaction still open then is rolled back)."""

    def __init__(self, connection: postgres.Connection):
        self._connection = connection

    @staticmethod
    def open(name: str) -> "Postgres":
        return Postgres(_call(postgres.Connection.open, name))

    def query(self, statement: str, params=()) -> List[Dict[str, object]]:
        """Runs one statement with `params` filling `$1`, `$2`, ... (None,
        bool, int, float, str, bytes, decimal.Decimal, datetime.date,
        datetime.datetime (an aware one in UTC), or a dict or list for jsonb)
        and returns its rows,
        each a dict from column name to value (numeric as decimal.Decimal,
        jsonb parsed, dates and times as datetime's types)."""
        result = _call(self._connection.query, statement, [_pg_value(p) for p in params])
        names = [column.name for column in result.columns]
        return [dict(zip(names, (_pg_python(v) for v in row))) for row in result.rows]

    def execute(self, statement: str, params=()) -> int:
        """Runs one statement and returns how many rows it changed."""
        return _call(self._connection.execute, statement, [_pg_value(p) for p in params])


def _pg_value(value) -> postgres.ParameterValue:
    if value is None:
        return postgres.ParameterValue_DbNull()
    if isinstance(value, bool):
        return postgres.ParameterValue_Boolean(value)
    if isinstance(value, int):
        return postgres.ParameterValue_Int64(value)
    if isinstance(value, float):
        return postgres.ParameterValue_Floating64(value)
    if isinstance(value, str):
        return postgres.ParameterValue_Str(value)
    if isinstance(value, (bytes, bytearray)):
        return postgres.ParameterValue_Binary(bytes(value))
    if isinstance(value, decimal.Decimal):
        return postgres.ParameterValue_Decimal(format(value, "f"))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return postgres.ParameterValue_Datetime(
            (value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond * 1000)
        )
    if isinstance(value, datetime.date):
        return postgres.ParameterValue_Date((value.year, value.month, value.day))
    if isinstance(value, (dict, list)):
        return postgres.ParameterValue_Jsonb(json.dumps(value).encode())
    raise TypeError(f"not a PostgreSQL parameter: {type(value).__name__}")


def _pg_python(value: postgres.DbValue):
    if isinstance(value, postgres.DbValue_DbNull):
        return None
    if isinstance(value, postgres.DbValue_Decimal):
        return decimal.Decimal(value.value)
    if isinstance(value, postgres.DbValue_Jsonb):
        return json.loads(value.value)
    if isinstance(value, postgres.DbValue_Date):
        return datetime.date(*value.value)
    if isinstance(value, postgres.DbValue_Time):
        h, m, s, ns = value.value
        return datetime.time(h, m, s, ns // 1000)
    if isinstance(value, postgres.DbValue_Datetime):
        y, mo, d, h, mi, s, ns = value.value
        return datetime.datetime(y, mo, d, h, mi, s, ns // 1000)
    return value.value


def config(key: str) -> Optional[str]:
    """The value of `key` in the function's `[functions.<id>.config]`."""
    return _call(wasi_config_store.get, key)


def _call(f, *args):
    try:
        return f(*args)
    except Err as e:
        error = e.value
        detail = getattr(error, "value", None)
        kind = type(error).__name__.rsplit("_", 1)[-1]
        raise Error(f"{kind}: {detail}" if detail else kind) from None


def http_handler(handler: Callable[[Request], Response]):
    """The `IncomingHandler` class that serves every request with `handler`.
    An exception in `handler` answers 500 and prints its traceback to the
    function's log."""

    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request: http.IncomingRequest, response_out: http.ResponseOutparam) -> None:
            try:
                response = handler(_read(request))
            except Exception:
                traceback.print_exc(file=sys.stderr)
                response = Response(500, "internal error\n")
            _write(response, response_out)

    return IncomingHandler


def _read(request: http.IncomingRequest) -> Request:
    method = request.method()
    target = urlsplit(request.path_with_query() or "/")
    headers: Dict[str, str] = {}
    with request.headers() as fields:
        for name, value in fields.entries():
            headers.setdefault(name.lower(), value.decode("utf-8", "replace"))
    params = {
        name[len(PARAM_PREFIX) :]: unquote(value)
        for name, value in headers.items()
        if name.startswith(PARAM_PREFIX)
    }
    chunks = []
    with request.consume() as body, body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(65536))
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise
    return Request(
        method=method.value if isinstance(method, http.Method_Other) else type(method).__name__[7:].upper(),
        path=target.path,
        query=parse_qs(target.query, keep_blank_values=True),
        headers=headers,
        params=params,
        body=b"".join(chunks),
    )


def _write(response: Response, response_out: http.ResponseOutparam) -> None:
    headers = {name.lower(): value for name, value in response.headers.items()}
    body = response.body
    if isinstance(body, str):
        body = body.encode("utf-8")
        headers.setdefault("content-type", "text/plain; charset=utf-8")
    fields = http.Fields.from_list([(name, value.encode("utf-8")) for name, value in headers.items()])
    outgoing = http.OutgoingResponse(fields)
    outgoing.set_status_code(response.status)
    outgoing_body = outgoing.body()
    http.ResponseOutparam.set(response_out, Ok(outgoing))
    with outgoing_body.write() as stream:
        for start in range(0, len(body), WRITE_CHUNK):
            stream.blocking_write_and_flush(body[start : start + WRITE_CHUNK])
    http.OutgoingBody.finish(outgoing_body, None)
