"""The run layer: the config (:mod:`~pyg_schnet.run.config`), the training
recipe (:mod:`~pyg_schnet.run.recipe`), the run directory
(:mod:`~pyg_schnet.run.rundir`) and its checkpoints
(:mod:`~pyg_schnet.run.checkpoint`), the trainer (:mod:`~pyg_schnet.run.trainer`)
with its tracking, data parallelism and launcher. It imports the ground
modules, :mod:`pyg_schnet.nn` and :mod:`pyg_schnet.data`."""
