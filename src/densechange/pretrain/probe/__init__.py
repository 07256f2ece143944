"""Dense-feature probes: is a pretrained encoder any good, without finetuning it?

``features`` picks seeded pixels and their labels on the stride-4 grid, ``search`` runs faiss kNN and
k-means, ``metrics`` scores them, ``score`` puts the three together, ``epoch`` runs the probe during
pretraining and ``cli`` is ``densechange probe``. The change probe (``task=change``) compares both
dates' features (``change_features``), fits a head on a class-balanced sample of cells
(``change_head``) and counts change F1 and AUROC over a test split (``change``).
"""
