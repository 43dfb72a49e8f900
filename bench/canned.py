#!/usr/bin/env python3
"""An Engine API stand-in that answers `docker ps` from a file, for the client's floor.

Usage: canned.py SOCKET BODY_FILE
Serves /_ping and /containers/json (any API version) on the unix socket SOCKET, the
latter with the bytes of BODY_FILE (a list captured from a real daemon). It measures
what the docker CLI costs by itself to fetch, decode and print a list: a daemon that
took no time at all would give `docker ps -a` this wall time.
"""
import os
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

SOCKET, BODY = sys.argv[1], open(sys.argv[2], "rb").read()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body, content_type):
        self.send_response(200)
        self.send_header("Api-Version", "1.50")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            self.answer(b"OK", "text/plain; charset=utf-8")
        elif path.endswith("/containers/json"):
            self.answer(BODY, "application/json")
        else:
            self.send_error(404)

    do_HEAD = do_GET


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        sock, _ = self.socket.accept()
        return sock, ("local", 0)


if os.path.exists(SOCKET):
    os.unlink(SOCKET)
Server(SOCKET, Handler).serve_forever()
