"""factory-boy factories, one module per area (atlas, reference, parties)."""
