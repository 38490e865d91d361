"""Pre-training the shared backbone: corpus curation (:mod:`.corpus`), hyper-parameters (:mod:`.config`,
torch-free) and the masked-image-modelling loop (:mod:`.train`).
"""
