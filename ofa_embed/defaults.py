"""Defaults that the library's functions and the CLI's options share, in a module that imports nothing, so that
the CLI reads them without loading the heavy libraries the functions need.
"""

__all__ = ["BOOTSTRAP_REPLICATES", "CORPUS_MIN_VALID", "CORPUS_SHARD_SIZE", "CV_FOLDS", "GEOBENCH_BATCH_SIZE",
           "KNN_NEIGHBOURS", "SEARCH_K"]

# replicates of the bootstrap behind every 95 % interval: enough for stable 2.5/97.5 percentiles
BOOTSTRAP_REPLICATES = 1000
# cross-validation folds of probe and knn
CV_FOLDS = 5
# neighbours that vote in knn
KNN_NEIGHBOURS = 10
# results of a search
SEARCH_K = 10
# pre-training corpus: tiles with a smaller valid fraction are left out (masked pixels teach nothing), and tiles
# per shard file
CORPUS_MIN_VALID = 0.9
CORPUS_SHARD_SIZE = 256
# images per forward pass of the GEO-Bench runner
GEOBENCH_BATCH_SIZE = 64
