"""A misbehaving OpenAI-style server for the server-backend tests: healthy, then garbage
answers (--mode garbage), an exit after the first request (--mode die), or requests that
hang (--mode slow). Loopback only."""

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--mode", choices=["garbage", "die", "slow"], required=True)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self._reply(200, {"status": "ok"})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if args.mode == "die":
                print("fake server: exiting on purpose", flush=True)
                os._exit(3)
            if args.mode == "slow":
                time.sleep(120)
            self._reply(200, {"not": "a completion"})

        def _reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    print(f"fake server ({args.mode}) for {args.model} on 127.0.0.1:{args.port}", flush=True)
    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
