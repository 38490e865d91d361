"""GEO-Bench v1.0 with the frozen backbone: linear probes on its 6 classification and 6 segmentation tasks.

Reads a GEO-Bench download as it lies on disk (no network, no ``geobench`` package), embeds every sample
with the frozen backbone and fits linear probes: a logistic probe on pooled embeddings for
classification, a linear layer on patch tokens for segmentation. Scores come with bootstrapped 95 %
intervals and sit beside published figures of the closest public model.

On-disk format (GEO-Bench v1.0)
-------------------------------
Learned from the public reader of ServiceNow/geo-bench (``geobench/dataset.py``: ``write_sample_hdf5``,
``load_sample_hdf5``, ``Partition.save``, ``_load_band_stats``; ``geobench/label.py``; the dataset
converters under ``geobench/benchmark/dataset_converters/``; ``geobench/benchmark/create_benchmark.py``)
and the independent reader of torchgeo/torchgeo-bench (``datasets/geobench_v1.py``, ``_metadata.py``)::

    ROOT/classification_v1.0/m-eurosat/          one folder per task (same for segmentation_v1.0/...)
        default_partition.json                   {"train": [names], "valid": [names], "test": [names]}
        0.01x_train_partition.json ...           few-shot partitions (not used here)
        band_stats.json                          {band name: {min, max, mean, std, ...}} (not used here)
        task_specs.pkl                           pickled geobench classes: never read here
        <sample name>.hdf5                       one file per sample

* A sample file holds one HDF5 dataset per band, named by the band's GEO-Bench name (``"02 - Blue"``,
  ``"Red"``, ...), followed by ``_YYYY-MM-DD`` when the band carries a date (m-forestnet,
  m-cashew-plantation). Bands are ``(H, W)`` (``(H, W, K)`` for multi-channel bands such as the
  NeonTree hyperspectral cube) in stored units: digital numbers, reflectance or 8-bit values per task.
* Segmentation tasks store the mask as one more dataset named ``"label"``: ``(H, W)`` class indices.
* The file attribute ``"pickle"`` holds ``str(pickle.dumps(d))`` (a ``b'...'`` literal) of a dict with
  ``"bands_order"`` (dataset names in band order), per-band metadata (band descriptions as geobench
  classes, affine transform, CRS, date) and, for classification, ``"label"``: an ``int`` class index,
  or for multi-label m-bigearthnet a 43-long 0/1 array. The pickle is decoded by a restricted
  unpickler that builds plain data (numbers, strings, dates, numpy arrays without objects) and turns
  every geobench, affine and rasterio object into an inert placeholder; anything else is refused.
  The torchgeo-bench reader also accepts the same fields as JSON in a ``"metadata_json"`` attribute; so
  does this one.

Known errors of the published data, corrected here: m-eurosat stores Sentinel-2 band names in ESA
order while its channels have B8A last (geo-bench issue #28, torchgeo PR #2480); m-brick-kiln stores the
13 Sentinel-2 names but its channels are B1, B2, B3, B4, B5, B7, B8A, B8, B11, B12 and 8-bit TCI
red/green/blue (geo-bench issue #29; torchgeo-bench band statistics agree: the last three peak at 255).

Band mapping onto the modality registry (stored name -> registry band; "-" = stored, not used)
----------------------------------------------------------------------------------------------
=======================  ==============  =====================================================================
task                     modality        bands
=======================  ==============  =====================================================================
m-eurosat                sentinel2_l1c   13 bands, channel order corrected (see above)
m-brick-kiln             sentinel2_l2a   10 bands (corrected); TCI channels "10"-"12" -; B06, B09 missing
m-bigearthnet            sentinel2_l2a   12 bands (L2A, no B10)
m-so2sat                 sentinel2_l1c   the 10 Sentinel-2 bands B02-B08, B8A, B11, B12, stored as
                                         reflectance (x 10000 to digital numbers); the 8 Sentinel-1 bands -
m-forestnet              rgbn            "04 - Red", "03 - Green", "02 - Blue", "05 - NIR" (8-bit Landsat-8
                                         composites); "06 - SWIR1", "07 - SWIR2" -
m-pv4ger, m-pv4ger-seg,  rgb             "Red", "Green", "Blue" (8-bit aerial); NeonTree's "Canopy Height
m-nz-cattle, m-NeonTree                  Model" and hyperspectral "Neon" -
m-chesapeake-landcover   rgbn            "Red", "Green", "Blue", "NearInfrared" (8-bit NAIP)
m-cashew-plantation,     sentinel2_l2a   12 bands; "Cloud Probability" -
m-SA-crop-type
=======================  ==============  =====================================================================

Stored values become physical values and are normalised with the registry's scale, offset, mean and std,
exactly as :meth:`ofa_embed.raster.scene.Scene.read` does; registry bands a task lacks are 0 after
normalisation (the band mean), as with ``extract --bands``.

Protocol
--------
* Tile size: each image is resized (bilinear, antialiased) to the multiple of the patch size nearest to
  its native size (at least one patch): 64 -> 64, 120 -> 128, 332 -> 336, 500 -> 496. Masks stay native.
* Classification: pooled embeddings of train + valid fit :func:`~ofa_embed.downstream.probe.fit_probe`
  (regularisation by inner CV on train + valid), scored on test: accuracy, or micro mAP for
  m-bigearthnet (labels that never or always occur in train + valid cannot be fitted and are left out).
* Segmentation: patch tokens of train + valid (at most ``TRAIN_PATCH_BUDGET`` patches, sampled evenly
  over images) train one ``nn.Linear(D, classes)`` with class-balanced cross-entropy against each patch's
  majority pixel class (AdamW, ``PATCH_PROBE_STEPS`` steps, seeded). Test logits are upsampled bilinearly
  to the native mask; mIoU over classes present in truth or prediction, intervals from resampling test
  images.
* Reference figures: DOFA-Base, RGB input, frozen linear probe, as reported by torchgeo-bench (classification
  only; no comparable segmentation figure is given).
"""

from ofa_embed.downstream.geobench.files import GeoBenchSample, TaskFiles, find_tasks, open_task, read_sample
from ofa_embed.downstream.geobench.run import GeoBenchReport, GeoBenchResult, geobench
from ofa_embed.downstream.geobench.scoring import mean_iou
from ofa_embed.downstream.geobench.tasks import GEOBENCH_TASKS, REFERENCE_SOURCE, GeoBenchTask
from ofa_embed.errors import GeoBenchError

__all__ = [
    "GEOBENCH_TASKS", "REFERENCE_SOURCE", "GeoBenchError", "GeoBenchReport", "GeoBenchResult", "GeoBenchSample",
    "GeoBenchTask", "TaskFiles", "find_tasks", "geobench", "mean_iou", "open_task", "read_sample",
]
