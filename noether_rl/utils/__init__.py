"""Small shared helpers (atomic writes, device selection, seeding)."""
