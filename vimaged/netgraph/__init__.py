"""Netgraph binding: netgraph(4) control messages spoken without libnetgraph.

Layers, bottom up: ``structs`` (one ctypes.Structure per C struct), ``abi`` (constants and
the ``ng_mesg``/``sockaddr_ng`` framing), ``codec`` (payloads <-> records), ``transport`` (the
seam), ``kernel_transport`` (PF_NETGRAPH, FreeBSD), ``ngsocket`` (NgSocket: typed requests),
``linkview`` (a bridge's links as this process sees them). It imports nothing of vimaged
outside itself but ``vimaged.names``: the sim transport and the bridge lifecycle that use it
are ``vimaged.platforms``'. Importing the package makes no syscall; see docs/netgraph.md.
"""

from __future__ import annotations
