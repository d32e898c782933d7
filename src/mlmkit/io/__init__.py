"""Files and terminal output every layer writes: output directories, atomic writes, metrics logs, progress."""
