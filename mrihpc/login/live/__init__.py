"""Live plots in Visdom: offline page assets, a local server with its login, the follower that
streams the points' call logs into it, a transport that never stalls training, replay of the
per-point call logs, and the SSH tunnel line."""


class ServerError(RuntimeError):
    """The local Visdom server cannot be started, found or stopped; the message says why.
    (Here, not in server.py, so the CLI can catch it without importing requests.)"""
