"""The model, data-set and schedule names, in a module that imports nothing (no torch, not edgeode.train).

``edgeode.train.models`` and ``edgeode.train.data`` validate against these, and ``edgeode train``
(``edgeode.commands.train``) lists them in its help; the CLI builds that help in every process,
the torch-free runtime's too, so the names live outside :mod:`edgeode.train`.
"""

from __future__ import annotations

__all__ = ["ARCHS", "DATASETS", "SCHEDULES", "SERIES_ARCHS", "SERIES_DATASETS"]

#: Models ``ModelConfig.arch`` accepts.
ARCHS = ("odenet", "rknet", "resnet", "vgg", "spiral")
#: Data sets ``load_dataset`` accepts (no downloads: spiral is generated, digits ships with scikit-learn).
DATASETS = ("spiral", "digits", "mnist")
#: Learning-rate schedules ``TrainConfig.schedule`` accepts (see :class:`edgeode.train.checkpoint.TrainConfig`).
SCHEDULES = ("constant", "onecycle")
#: Series classifiers ``SeriesModelConfig.arch`` accepts (:mod:`edgeode.train.series_models`).
SERIES_ARCHS = ("odernn", "gru-dt", "gru")
#: Sensor series data sets (:mod:`edgeode.train.series_data`; real IMU data inside pinned packages).
SERIES_DATASETS = ("basicmotions", "watch")
