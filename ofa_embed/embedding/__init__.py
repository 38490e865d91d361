"""Turning pixels into embeddings: the one forward pass (:mod:`.forward`), scene extraction into a store
(:mod:`.extract`) and query tiles embedded like a store's (:mod:`.query`).
"""
