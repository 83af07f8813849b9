"""The login node: the ``mrihpc`` command and everything its verbs call. Nothing here imports
torch at module level (a test holds every verb to that), so a verb answers at once; the verbs
that train (``run``, ``profile``, ``predict``) import ``mrihpc.node`` when they are called."""
