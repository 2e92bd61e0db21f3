"""The experiments ``augserve train`` runs, with their data loaders and models."""
