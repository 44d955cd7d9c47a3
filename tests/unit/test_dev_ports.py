"""`remediate dev`'s port check: what a server would check, so a restart right after Ctrl-C is not refused."""

from __future__ import annotations

import socket

from service.cli.dev import port_free


def _time_wait_port() -> int:
    """A port whose server closed a connection first and then stopped: only a TIME-WAIT socket is left on it."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port: int = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: it is the side left in TIME-WAIT
            client.recv(1)
    return port


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free() -> None:
    """Right after a server on the port stopped (TIME-WAIT sockets only), dev may listen there again."""
    port = _time_wait_port()
    with socket.socket() as plain:  # what the old check did, and why it refused for a minute
        try:
            plain.bind(("127.0.0.1", port))
            reproduced = False
        except OSError:
            reproduced = True
    assert reproduced
    assert port_free("127.0.0.1", port)


def test_a_port_something_listens_on_is_not_free() -> None:
    """A listener, even one that set SO_REUSEADDR itself, makes the port taken."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        assert not port_free("127.0.0.1", held.getsockname()[1])
