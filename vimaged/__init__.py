"""vimaged: a supervisor for FreeBSD vimages (VNET jails).

Only ``__version__`` lives here: vimagectl imports this package and must stay light.
"""

__version__ = "0.1.0"
