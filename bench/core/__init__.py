"""The ground floor: errors, number checks, the store (the one owner of file names and paths), the
console maker (the one owner of how user text reaches the terminal) and the seeds of the training and
sampling streams.

Imports nothing of bench above it."""
