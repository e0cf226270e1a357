"""The ground floor: errors, number checks, the store (the one owner of file names and paths), the
console maker (the one owner of how user text reaches the terminal), the seeds of the training and
sampling streams, and what a config or method-parameter field's type accepts.

Imports nothing of bench above it."""
