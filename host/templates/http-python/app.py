"""`{{name}}`: an HTTP function, made by `nimbus new http-python`.

`GET /hello/:name` greets `name` with the configured greeting and counts its
visits in the key-value store `{{name}}` (granted by `kv = ["{{name}}"]` in
nimbus.toml).
"""

import nimbus

# The key-value store the manifest grants this function.
STORE = "{{name}}"


def hello(request: nimbus.Request) -> nimbus.Response:
    name = request.params.get("name", "world")
    greeting = nimbus.config("greeting") or "Hello"
    visits = nimbus.Store.open(STORE).increment(f"visits/{name}")
    return nimbus.Response(200, f"{greeting}, {name}! (visit {visits})\n")


# What componentize-py exports as the `wasi:http` incoming handler.
IncomingHandler = nimbus.http_handler(hello)
