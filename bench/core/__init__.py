"""The ground floor: errors, number checks, the store (the one owner of file names and paths) and the
console maker (the one owner of how user text reaches the terminal).

Imports nothing of bench above it."""
