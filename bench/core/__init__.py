"""The ground floor: errors, number checks and the store (the one owner of file names and paths).

Imports nothing of bench above it."""
