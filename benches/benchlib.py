"""What the Python benches share: free loopback ports, bounded waits, percentiles."""

import socket
import time


def port(kind=socket.SOCK_DGRAM):
    """A free port on 127.0.0.1 (UDP unless told otherwise)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout):
    """Polls `check` until it is true or `timeout` seconds pass; a refused connection is a no."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def pct(values, p):
    """The p-th percentile (nearest rank) of `values`, NaN when there are none."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")
