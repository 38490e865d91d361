"""Turning pixels into embeddings: the one forward pass (:mod:`.forward`), scene extraction into a store
(:mod:`.extract`, on a Dask cluster :mod:`.distributed`), chip collections (:mod:`.chips`) and query tiles
embedded like a store's (:mod:`.query`). What a run is asked is one :class:`~.options.RunOptions`; the
modules the entry points share: :mod:`.checks` (refusals before anything is read), :mod:`.pipeline` (model,
reader, forward passes), :mod:`.records` (what a store file records of its run), :mod:`.scene_files`.
"""

# forward-pass precisions (torch-free here, so that the CLI can offer them without importing torch)
PRECISIONS = ("auto", "fp32", "bf16")
