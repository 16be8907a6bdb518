"""Whole volumes on a cluster: block-wise prediction and tracing on dask.distributed.

``dineuro run VOLUME.ome.zarr -o OUT --workers N`` (or ``--scheduler ADDRESS``) runs
:func:`run_volume`: the volume is cut into blocks (:mod:`~dineuro.scale.plan`), each predicted
and traced by one task on a worker (:mod:`~dineuro.scale.block`), and the blocks' centre-line
fragments are stitched into one SWC per neuron (:mod:`~dineuro.scale.fragments`,
:mod:`~dineuro.scale.neurons`) beside a multiscale OME-Zarr probability map and mask
(:mod:`~dineuro.scale.pyramid`, :mod:`~dineuro.scale.mask`). Needs the ``cluster`` extra
(dask.distributed).
"""

from dineuro.scale.plan import Block, BlockPlan
from dineuro.scale.run import BlocksFailed, VolumeRun, run_volume, volume_outputs

__all__ = ["Block", "BlockPlan", "BlocksFailed", "VolumeRun",
           "run_volume", "volume_outputs"]
