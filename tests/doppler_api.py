"""A local stand-in for Doppler's REST API (its servers cannot be reached from here).

Serves `GET /v3/configs/config/secrets/download?format=json` over plain HTTP on 127.0.0.1, checks
the bearer token, counts requests, and can be told to answer 5xx a number of times first.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class DopplerApiStandIn:
    def __init__(self, secrets: dict[str, str], token: str = "dp.st.test-token"):
        self.secrets = secrets
        self.token = token
        self.requests: list[dict] = []
        self.fail_times = 0
        self.fail_status = 503
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                url = urlparse(self.path)
                stand_in.requests.append(
                    {
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "auth": self.headers.get("Authorization", ""),
                    }
                )
                if stand_in.fail_times > 0:
                    stand_in.fail_times -= 1
                    return self._reply(
                        stand_in.fail_status, {"messages": ["temporarily unavailable"]}
                    )
                if url.path != "/v3/configs/config/secrets/download":
                    return self._reply(404, {"messages": ["not found"]})
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    return self._reply(401, {"messages": ["Invalid Auth token"], "success": False})
                return self._reply(200, stand_in.secrets)

            def _reply(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> DopplerApiStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
