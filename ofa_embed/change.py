"""Change between two times: the cosine distance between the embeddings of the same place, per tile and per
field pixel.

``before`` and ``after`` each select scenes of one store: a date (``2020-05-18``), a date range
(``2020-05-01..2020-06-30``, either end may be left open) or scene names (comma-separated). Scenes dated on a
day in the range are selected; a scene name selects that scene whatever its date.

Tiles: each tile of an ``after`` scene is matched with the ``before`` tile that overlaps it most (areas in a
local equal-area projection); ``overlap`` is the shared fraction of the after tile, and a pair below
:data:`FULL_OVERLAP` is flagged ``partial`` (grids that do not line up, scene edges). Fields: where a before
and an after scene both have fields, the before field is resampled (nearest pixel) onto the after field's
grid and the per-pixel cosine distance is written as a float32 COG (NaN where either is nodata).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import ConfigError, QueryError, StoreError
from ofa_embed.field_files import FieldGrid, field_record, list_fields, read_field_array
from ofa_embed.location import AnyPath, as_location
from ofa_embed.store.reading import read_embeddings, read_tiles

__all__ = ["CHANGE_COLUMNS", "FULL_OVERLAP", "ChangeReport", "change", "select_scenes"]

logger = logging.getLogger(__name__)

FULL_OVERLAP = 0.99  # a matched pair sharing less of the after tile is "partial"
CHANGE_COLUMNS = ("id", "scene", "datetime", "before_id", "before_scene", "before_datetime", "overlap", "partial",
                  "cosine_distance", "geometry")


@dataclass
class ChangeReport:
    """What ``change`` compared and found.

    Attributes:
        before, after: the scenes each selector chose.
        tiles: one row per matched after tile (:data:`CHANGE_COLUMNS`), most changed first.
        unmatched: after tiles with no before tile overlapping them.
        fields: per pair of scenes with fields, ``(before, after, COG path, pixels compared)``.
        out: the GeoParquet written, if any.
    """

    before: list[str]
    after: list[str]
    tiles: gpd.GeoDataFrame
    unmatched: int
    fields: list[tuple[str, str, AnyPath, int]] = field(default_factory=list)
    out: Path | None = None

    @property
    def partial(self) -> int:
        """Matched pairs that share less than :data:`FULL_OVERLAP` of the after tile."""
        return int(self.tiles["partial"].sum())


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def select_scenes(selector: str, scenes: pd.DataFrame, name: str) -> list[str]:
    """Scene names that ``selector`` (a date, ``START..END``, or comma-separated scene names) picks among ``scenes``
    (columns ``scene``, ``datetime``).

    Raises:
        QueryError: a selector that matches no scene (with what the store holds).
    """
    held = scenes.drop_duplicates("scene")
    days = pd.to_datetime(held["datetime"], utc=True).dt.date
    if ".." in selector:
        start_text, end_text = selector.split("..", 1)
        start, end = _parse_day(start_text), _parse_day(end_text)
        if (start is None and start_text.strip()) or (end is None and end_text.strip()):
            raise QueryError(f"--{name} {selector!r}: a range is START..END in ISO dates (2020-05-01..2020-06-30)")
        mask = days.notna() & days.map(lambda d: (start is None or d >= start) and (end is None or d <= end))
    elif (day := _parse_day(selector)) is not None:
        mask = days == day
    else:
        wanted = [s.strip() for s in selector.split(",") if s.strip()]
        mask = held["scene"].isin(wanted)
        if unknown := [s for s in wanted if s not in set(held["scene"])]:
            raise QueryError(f"--{name}: no scene {', '.join(repr(s) for s in unknown)} in the store; give a date, "
                             f"START..END or one of its scenes: {_holdings(held)}")
    chosen = held.loc[mask.to_numpy(), "scene"].tolist()
    if not chosen:
        raise QueryError(f"--{name} {selector!r} matches no scene; the store holds {_holdings(held)}")
    return sorted(chosen)


def _holdings(held: pd.DataFrame) -> str:
    rows = [f"{s} ({pd.Timestamp(d).date() if pd.notna(d) else 'undated'})"
            for s, d in zip(held["scene"], held["datetime"], strict=True)]
    return ", ".join(rows[:6]) + (f" and {len(rows) - 6} more" if len(rows) > 6 else "")


def _cosine_distance(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    num = (a * b).sum(axis=axis)
    den = np.linalg.norm(a, axis=axis) * np.linalg.norm(b, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (1.0 - num / den).astype(np.float32)


def _match_tiles(before: gpd.GeoDataFrame, after: gpd.GeoDataFrame) -> pd.DataFrame:
    """``(after position, before position, overlap)``: each after tile's most overlapping before tile."""
    crs = after.estimate_utm_crs() if len(after) else "EPSG:6933"
    a = after[["position", "geometry"]].to_crs(crs)
    b = before[["position", "geometry"]].to_crs(crs)
    a["area"] = a.area
    pairs = gpd.overlay(a.rename(columns={"position": "after"}), b.rename(columns={"position": "before"}),
                        how="intersection", keep_geom_type=True)
    if pairs.empty:
        return pd.DataFrame({"after": [], "before": [], "overlap": []})
    pairs["overlap"] = pairs.area / pairs["area"]
    best = pairs.sort_values(["after", "overlap"], ascending=[True, False]).drop_duplicates("after")
    return best[["after", "before", "overlap"]].reset_index(drop=True)


def _field_change(before: AnyPath, after: AnyPath, target: Path) -> int:
    """Write the per-pixel cosine distance of two fields on the after field's grid; pixels compared."""
    from rasterio.warp import Resampling, reproject

    b_values, b_grid, b_record = read_field_array(before)
    a_values, a_grid, a_record = read_field_array(after)
    b_hash = b_record.get("model", {}).get("weights_hash")
    a_hash = a_record.get("model", {}).get("weights_hash")
    if b_hash != a_hash:
        raise ConfigError(f"{before} and {after}: fields of different models (weights {b_hash} and {a_hash}); "
                          "compare fields extracted with the same weights")
    if b_values.shape[0] != a_values.shape[0]:
        raise ConfigError(f"{before} and {after}: fields of {b_values.shape[0]} and {a_values.shape[0]} dimensions")
    onto = np.full_like(a_values, np.nan)
    reproject(b_values, onto, src_transform=b_grid.transform, src_crs=b_grid.crs, dst_transform=a_grid.transform,
              dst_crs=a_grid.crs, src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.nearest)
    distance = _cosine_distance(onto, a_values, axis=0)
    distance[np.isnan(onto).any(axis=0) | np.isnan(a_values).any(axis=0)] = np.nan
    _write_distance(target, distance, a_grid)
    return int(np.isfinite(distance).sum())


def _write_distance(target: Path, distance: np.ndarray, grid: FieldGrid) -> None:
    import tempfile

    import rasterio
    import rasterio.shutil

    with tempfile.TemporaryDirectory(prefix="ofa-embed-change-") as scratch, atomic_target(target) as tmp:
        plain = Path(scratch) / "change.tif"
        with rasterio.open(plain, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                           dtype="float32", crs=grid.crs, transform=grid.transform, nodata=float("nan")) as dst:
            dst.write(distance, 1)
            dst.set_band_description(1, "cosine_distance")
        rasterio.shutil.copy(plain, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", RESAMPLING="AVERAGE")


def change(store: str | AnyPath, before: str, after: str, *, out: str | Path | None = None) -> ChangeReport:
    """Compare the scenes ``before`` selects with those ``after`` selects (see the module docstring).

    Args:
        store: one store (one model's embeddings).
        before: the earlier scenes: a date, ``START..END`` or comma-separated scene names.
        after: the later scenes, selected alike.
        out: a GeoParquet file of the matched tiles, most changed first; field changes are written beside it as
            ``<out stem>.<before scene>.<after scene>.tif``.

    Raises:
        QueryError: a selector matching nothing, both selecting the same scene, a store of fewer than two scenes.
        StoreError: an empty store. ConfigError: fields of different models.
    """
    store = as_location(store)
    tiles = read_tiles(store, ("id", "scene", "datetime", "geometry"))
    if tiles.empty:
        raise StoreError(f"{store}: holds no tiles; extract scenes first")
    scenes = tiles[["scene", "datetime"]]
    if tiles["scene"].nunique() < 2:
        raise QueryError(f"{store}: holds one scene only ({tiles['scene'].iloc[0]}); change needs scenes at two times")
    chosen_before = select_scenes(before, scenes, "before")
    chosen_after = select_scenes(after, scenes, "after")
    if both := sorted(set(chosen_before) & set(chosen_after)):
        raise QueryError(f"--before {before!r} and --after {after!r} both select {', '.join(both)}; choose "
                         "disjoint dates or scenes")
    b = tiles[tiles["scene"].isin(chosen_before)]
    a = tiles[tiles["scene"].isin(chosen_after)]
    pairs = _match_tiles(b, a)
    after_rows = tiles.set_index("position").loc[pairs["after"].to_numpy()]
    before_rows = tiles.set_index("position").loc[pairs["before"].to_numpy()]
    if len(pairs):
        distance = _cosine_distance(read_embeddings(store, pairs["before"].to_numpy()),
                                    read_embeddings(store, pairs["after"].to_numpy()))
    else:
        distance = np.empty(0, np.float32)
    frame = gpd.GeoDataFrame({
        "id": after_rows["id"].to_numpy(), "scene": after_rows["scene"].to_numpy(),
        "datetime": after_rows["datetime"].to_numpy(), "before_id": before_rows["id"].to_numpy(),
        "before_scene": before_rows["scene"].to_numpy(), "before_datetime": before_rows["datetime"].to_numpy(),
        "overlap": pairs["overlap"].to_numpy(), "partial": pairs["overlap"].to_numpy() < FULL_OVERLAP,
        "cosine_distance": distance,
    }, geometry=after_rows.geometry.to_numpy(), crs=tiles.crs)
    frame = frame.sort_values("cosine_distance", ascending=False, kind="stable").reset_index(drop=True)
    report = ChangeReport(chosen_before, chosen_after, frame, len(a) - len(pairs))
    if out is not None:
        out = Path(out)
        held = list_fields(store)
        pairs_with_fields = [(sb, sa) for sa in chosen_after for sb in chosen_before if sb in held and sa in held]
        models = {sc: field_record(held[sc]).get("model", {}).get("weights_hash") for pair in pairs_with_fields
                  for sc in pair}
        if len(set(models.values())) > 1:  # checked before anything is written
            raise ConfigError(f"{store}: fields of different models ({', '.join(f'{s}: {h}' for s, h in models.items())}); "
                              "compare fields extracted with the same weights")
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(out) as tmp:
            frame.to_parquet(tmp)
        report.out = out
        for scene_before, scene_after in pairs_with_fields:
            target = out.with_name(f"{out.stem}.{scene_before}.{scene_after}.tif")
            pixels = _field_change(held[scene_before], held[scene_after], target)
            report.fields.append((scene_before, scene_after, target, pixels))
    return report
