"""Jobs: base, inject, eval, unlearn. Each is setup -> run -> outputs in its run directory."""
