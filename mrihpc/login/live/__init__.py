"""Live plots in Visdom on the login node: offline page assets, a local server with its login,
the follower that streams the points' call logs into it, and the SSH tunnel line. The transport
both sides post with (and replay) is ``mrihpc.visdom_transport``."""


class ServerError(RuntimeError):
    """The local Visdom server cannot be started, found or stopped; the message says why.
    (Here, not in server.py, so the CLI can catch it without importing requests.)"""


#: the port of a Visdom server when neither the spec nor --port names one (visdom's own default)
DEFAULT_PORT = 8097
