"""What every store file records of the run that wrote it: the model (weights, precision) and the input it was
fed, beside the scene's or the chips' own record. One source for scene files, chip files and the files a Dask
run's workers write, so that a store's files describe their runs alike.
"""

from __future__ import annotations

from ofa_embed import __version__
from ofa_embed.embedding.forward import ModelInput
from ofa_embed.model.checkpoint import LoadedModel
from ofa_embed.raster.scene import Scene
from ofa_embed.store.metadata import ChipsRecord, ModelRecord, SceneRecord, TilingRecord, scene_metadata

__all__ = ["file_metadata", "model_record"]


def model_record(loaded: LoadedModel, precision: str) -> ModelRecord:
    """The store's record of ``loaded``, its forward passes run at ``precision`` (``fp32`` or ``bf16``)."""
    model = loaded.model
    return ModelRecord(model.config.name, model.config.to_dict(), loaded.weights_hash, loaded.source, loaded.pretrained,
                       model.pooling, precision, model.embedding_dim)


def file_metadata(scene: Scene, record: ModelRecord, fed: ModelInput, tiling: TilingRecord,
                  where: SceneRecord | ChipsRecord) -> dict[str, object]:
    """The ``ofa_embed`` record of a store file of ``scene`` (or of chips read like it, ``where``)."""
    return scene_metadata(
        package_version=__version__, model=record, modality=scene.modality.to_metadata(), model_input=fed.record,
        input_values=scene.input_values | ({"mask": scene.mask} if scene.mask else {}), source_bands=list(scene.source_labels),
        missing_bands=list(scene.missing_bands), tiling=tiling, scene=where, assumed=scene.assumed,
    )
