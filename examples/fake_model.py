"""A small local stand-in for a model provider, for the gevent example.

POST /v1/completions with {"prompt": ...} answers {"text", "usage"}; a prompt with
``[model-down]`` gets a 503, as a provider outage would. Run it with
``python -m chatspan.examples.fake_model --port 8001``.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ModelHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        prompt = str(body.get("prompt", ""))
        if "[model-down]" in prompt:
            self._answer(
                503, {"error": {"type": "overloaded", "message": "the model is overloaded"}}
            )
            return
        text = f"Model answer to: {prompt.strip()}. Thanks for asking."
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        self._answer(200, {"text": text, "usage": usage})

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serve(port: int) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", port), ModelHandler)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    serve(parser.parse_args().port).serve_forever()


if __name__ == "__main__":
    main()
