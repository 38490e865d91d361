"""Turning pixels into embeddings: the one forward pass (:mod:`.forward`), scene extraction into a store
(:mod:`.extract`), chip collections (:mod:`.chips`) and query tiles embedded like a store's (:mod:`.query`).
"""

# forward-pass precisions (torch-free here, so that the CLI can offer them without importing torch)
PRECISIONS = ("auto", "fp32", "bf16")
