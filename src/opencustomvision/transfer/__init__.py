"""Moving data in and out over the public Training API: ``ocv migrate`` and ``ocv dataset``.

Nothing here touches the database or the blob store; it is a client, so it works the same against
the local server, a remote OpenCustomVision and Azure Custom Vision.
"""
