"""The compute node: what an array task runs, from submitit's pickled ``PointTask`` (``entry``)
through ``runner`` (a point's status.json, whatever happens) to the ``Trainer`` (``train``) and
its ``monitors``. The workloads' tasks implement ``task.Task``."""
