"""newsgen runtime library: the contracts shared by training and serving.

Modules import heavy dependencies (torch, transformers) lazily where they can, so that functions which only
move artifacts or split batch files (the Zip functions) load without them.
"""

__version__ = "0.1.0"
