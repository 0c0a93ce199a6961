"""Getting an artifact onto disk (or stdout) safely, with progress."""
