"""Exporting the three sub-models: their contracts (:mod:`.specs`), the engine folder's
manifest (:mod:`.manifest`) and ``torch.export`` programs (:mod:`.pt2`)."""
