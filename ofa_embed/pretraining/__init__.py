"""Pre-training the shared backbone: corpus curation (:mod:`.corpus`), hyper-parameters and objective options
(:mod:`.config`, torch-free), the objectives chosen by name (:mod:`.objective`) and the loop (:mod:`.train`).
"""
