"""The model layer: radius graphs (:mod:`~pyg_schnet.nn.radius`; the transform
on PyG's ``Data``, :mod:`~pyg_schnet.nn.graph`), edge filters
(:mod:`~pyg_schnet.nn.filters`), the pair sum (:mod:`~pyg_schnet.nn.aggregation`),
SchNet (:mod:`~pyg_schnet.nn.schnet`) and its fast mode (:mod:`~pyg_schnet.nn.fast`),
PaiNN (:mod:`~pyg_schnet.nn.painn`), PyG's models behind the same interface
(:mod:`~pyg_schnet.nn.pyg`) and the model registry (:mod:`~pyg_schnet.nn.models`).
It imports the ground modules (errors, registry) only."""
