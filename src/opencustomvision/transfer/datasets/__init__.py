"""Dataset formats: each module reads a folder into a :class:`Dataset` and writes one from a project.

Every module has ``read(path) -> Dataset``, a ``Writer(root, tags)`` with ``add(image, data)`` and
``close()``, and ``KIND``: the projects it holds ("detection", "classification" or "any").
"""

from __future__ import annotations

from types import ModuleType

from opencustomvision.transfer.datasets import coco, customvision, folders, voc, yolo

FORMATS: dict[str, ModuleType] = {"coco": coco, "voc": voc, "yolo": yolo, "folders": folders, "customvision": customvision}
