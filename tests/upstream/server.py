"""A plain HTTP/1.1 upstream in a process of its own, for exgate's availability tests:
a test can freeze it (SIGSTOP), thaw it (SIGCONT) or kill it, as an operator would an
Exchange server. Standard library only.

Usage: server.py NAME
Listens on 127.0.0.1, port 0, and prints the port on stdout. Every request (health
checks included) is answered 200, keep-alive, with `X-Upstream: NAME`; request bodies
are read and dropped.
"""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and the
    # client's delayed ACK hold every response for 40 ms.
    disable_nagle_algorithm = True

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("X-Upstream", self.server.name)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = answer

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass  # a client that went away (a test cut it); nothing to report


def main():
    server = Server(("127.0.0.1", 0), Handler)
    server.name = sys.argv[1]
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
