"""A seventh workload, small on purpose, and the worked example of the README's "Adding a
workload": denoising single images kept as ``.npy`` files. Everything it needs is in this
package; the registry line (``"blobs": "blobs.spec:WORKLOAD"`` in ``mrihpc/workloads/__init__.py``)
is added by ``tests/test_new_workload.py`` with monkeypatch."""
