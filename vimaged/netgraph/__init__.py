"""Netgraph binding: netgraph(4) control messages spoken without libnetgraph.

Layers, bottom up: ``structs`` (one ctypes.Structure per C struct), ``abi`` (constants and
the ``ng_mesg``/``sockaddr_ng`` framing), ``codec`` (payloads <-> records), ``transport`` (the
seam), ``kernel_transport`` (PF_NETGRAPH, FreeBSD) and ``sim_transport`` (vimaged.simhost),
``ngsocket`` (NgSocket: typed requests), ``bridges`` (the bridged-ifnet graphs). Importing the
package makes no syscall; see docs/netgraph.md.
"""

from __future__ import annotations
