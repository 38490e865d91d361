import threading
from collections import deque

import numpy as np

from ofa_embed.raster.reader import PREFETCH_DEPTH, TileRing, plan_tiles, read_tile_batches
from ofa_embed.raster.scene import open_scene
from ofa_embed.sensors import get_modality
from tests.helpers import s2_values, write_raster

S2 = get_modality("sentinel2_l1c")


def test_scenes_sharing_a_ring_never_overwrite_a_batch_still_held(tmp_path):
    # 4 x 4 = 16 tiles (a multiple of the batch) and 3 x 5 = 15 tiles (a partial last batch), twice over
    sizes = [(128, 128), (96, 160), (128, 128), (96, 160)]
    scenes = [open_scene(write_raster(tmp_path / f"s2_{i}.tif", s2_values(h, w, seed=i), descriptions=S2.band_names))
              for i, (h, w) in enumerate(sizes)]
    held, batch_size = 3, 4
    ring = TileRing(held)
    # when a batch is yielded, the consumer may still hold `held` batches and the queue one more
    kept: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=held + PREFETCH_DEPTH + 1)
    tiles = 0
    for scene in scenes:
        plan = plan_tiles(scene, 32, None, 16)
        for batch in read_tile_batches(plan, batch_size, 0.0, threading.Event(), held, ring):
            kept.append((batch.data, batch.data.copy()))
            tiles += len(batch.tiles)
            for data, copy in kept:
                np.testing.assert_array_equal(data, copy)
        scene.close()
    assert tiles == 16 + 15 + 16 + 15
    assert len({id(a) for a in ring._ring}) == held + PREFETCH_DEPTH + 1  # one ring for all four scenes
