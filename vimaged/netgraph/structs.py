"""Netgraph binding, layout layer: one ``ctypes.Structure`` per C struct of the userland ABI.

Host byte order throughout, as the kernel reads them. Each docstring gives the C declaration
(field lists re-typed from the header named, not copied) so one grep finds both sides. Sizes are
asserted in ``tests/unit/test_netgraph_abi.py`` against the compiler-checked table in
``shared/reference/netgraph-abi.md`` §2.3.
"""

from __future__ import annotations

import ctypes

from vimaged.names import IFNAMSIZ as IFNAMSIZ  # the one definition (sys/net/if.h)

NG_TYPESIZ = 32
NG_HOOKSIZ = 32
NG_NODESIZ = 32
NG_PATHSIZ = 512
NG_CMDSTRSIZ = 32
ETHER_ADDR_LEN = 6


class NgMesgHeader(ctypes.Structure):
    """``struct ng_mesg`` minus its flexible ``data[]`` (``<netgraph/ng_message.h>``), 56 bytes.

    ``struct ng_msghdr { u_char version; u_char spare; u_int16_t spare2; u_int32_t arglen;
    u_int32_t cmd; u_int32_t flags; u_int32_t token; u_int32_t typecookie;
    char cmdstr[NG_CMDSTRSIZ]; } header; char data[];``
    """

    _fields_ = (
        ("version", ctypes.c_uint8),
        ("spare", ctypes.c_uint8),
        ("spare2", ctypes.c_uint16),
        ("arglen", ctypes.c_uint32),
        ("cmd", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("token", ctypes.c_uint32),
        ("typecookie", ctypes.c_uint32),
        ("cmdstr", ctypes.c_char * NG_CMDSTRSIZ),
    )


class SockaddrNg14(ctypes.Structure):
    """``struct sockaddr_ng`` of FreeBSD 13/14 (``<netgraph/ng_socket.h>``), 16 bytes.

    ``struct sockaddr_ng { unsigned char sg_len; sa_family_t sg_family; char sg_data[14]; };``
    The kernel attaches this size to every message it queues on a control socket.
    """

    _fields_ = (
        ("sg_len", ctypes.c_uint8),
        ("sg_family", ctypes.c_uint8),
        ("sg_data", ctypes.c_char * 14),
    )


class SockaddrNg32(ctypes.Structure):
    """``struct sockaddr_ng`` of FreeBSD main (``<netgraph/ng_socket.h>``), 34 bytes.

    ``struct sockaddr_ng { unsigned char sg_len; sa_family_t sg_family;
    char sg_data[32]; /* see NG_NODESIZ */ };``
    """

    _fields_ = (
        ("sg_len", ctypes.c_uint8),
        ("sg_family", ctypes.c_uint8),
        ("sg_data", ctypes.c_char * 32),
    )


class NgmMkpeer(ctypes.Structure):
    """``struct ngm_mkpeer { char type[NG_TYPESIZ]; char ourhook[NG_HOOKSIZ];
    char peerhook[NG_HOOKSIZ]; };`` (``<netgraph/ng_message.h>``), 96 bytes."""

    _fields_ = (
        ("type", ctypes.c_char * NG_TYPESIZ),
        ("ourhook", ctypes.c_char * NG_HOOKSIZ),
        ("peerhook", ctypes.c_char * NG_HOOKSIZ),
    )


class NgmConnect(ctypes.Structure):
    """``struct ngm_connect { char path[NG_PATHSIZ]; char ourhook[NG_HOOKSIZ];
    char peerhook[NG_HOOKSIZ]; };`` (``<netgraph/ng_message.h>``), 576 bytes."""

    _fields_ = (
        ("path", ctypes.c_char * NG_PATHSIZ),
        ("ourhook", ctypes.c_char * NG_HOOKSIZ),
        ("peerhook", ctypes.c_char * NG_HOOKSIZ),
    )


class NgmName(ctypes.Structure):
    """``struct ngm_name { char name[NG_NODESIZ]; };`` (``<netgraph/ng_message.h>``), 32 bytes."""

    _fields_ = (("name", ctypes.c_char * NG_NODESIZ),)


class NgmRmhook(ctypes.Structure):
    """``struct ngm_rmhook { char ourhook[NG_HOOKSIZ]; };`` (``<netgraph/ng_message.h>``), 32."""

    _fields_ = (("ourhook", ctypes.c_char * NG_HOOKSIZ),)


class Nodeinfo(ctypes.Structure):
    """``struct nodeinfo { char name[NG_NODESIZ]; char type[NG_TYPESIZ]; ng_ID_t id;
    u_int32_t hooks; };`` (``<netgraph/ng_message.h>``), 72 bytes: the NODEINFO reply."""

    _fields_ = (
        ("name", ctypes.c_char * NG_NODESIZ),
        ("type", ctypes.c_char * NG_TYPESIZ),
        ("id", ctypes.c_uint32),
        ("hooks", ctypes.c_uint32),
    )


class Linkinfo(ctypes.Structure):
    """``struct linkinfo { char ourhook[NG_HOOKSIZ]; char peerhook[NG_HOOKSIZ];
    struct nodeinfo nodeinfo; };`` (``<netgraph/ng_message.h>``), 136 bytes."""

    _fields_ = (
        ("ourhook", ctypes.c_char * NG_HOOKSIZ),
        ("peerhook", ctypes.c_char * NG_HOOKSIZ),
        ("nodeinfo", Nodeinfo),
    )


class Hooklist(ctypes.Structure):
    """``struct hooklist { struct nodeinfo nodeinfo; struct linkinfo link[]; };``
    (``<netgraph/ng_message.h>``), 72 bytes before ``nodeinfo.hooks`` Linkinfos: LISTHOOKS."""

    _fields_ = (("nodeinfo", Nodeinfo),)


class Namelist(ctypes.Structure):
    """``struct namelist { u_int32_t numnames; struct nodeinfo nodeinfo[]; };``
    (``<netgraph/ng_message.h>``), 4 bytes before the Nodeinfos: LISTNODES/LISTNAMES."""

    _fields_ = (("numnames", ctypes.c_uint32),)


class Typeinfo(ctypes.Structure):
    """``struct typeinfo { char type_name[NG_TYPESIZ]; u_int32_t numnodes; };``
    (``<netgraph/ng_message.h>``), 36 bytes."""

    _fields_ = (
        ("type_name", ctypes.c_char * NG_TYPESIZ),
        ("numnodes", ctypes.c_uint32),
    )


class Typelist(ctypes.Structure):
    """``struct typelist { u_int32_t numtypes; struct typeinfo typeinfo[]; };``
    (``<netgraph/ng_message.h>``), 4 bytes before the Typeinfos: LISTTYPES."""

    _fields_ = (("numtypes", ctypes.c_uint32),)


class NgBridgeConfig(ctypes.Structure):
    """``struct ng_bridge_config { u_char debugLevel; u_int32_t loopTimeout;
    u_int32_t maxStaleness; u_int32_t minStableAge; };`` (``<netgraph/ng_bridge.h>``, cookie
    1569321993), 16 bytes: get/setconfig."""

    _fields_ = (
        ("debugLevel", ctypes.c_uint8),
        ("loopTimeout", ctypes.c_uint32),
        ("maxStaleness", ctypes.c_uint32),
        ("minStableAge", ctypes.c_uint32),
    )


class NgBridgeConfigOld(ctypes.Structure):
    """``struct ng_bridge_config { u_char ipfw[NG_BRIDGE_MAX_LINKS]; u_char debugLevel;
    u_int32_t loopTimeout; u_int32_t maxStaleness; u_int32_t minStableAge; };``
    (``<netgraph/ng_bridge.h>`` of FreeBSD <= 12.1, cookie 967239368), 48 bytes."""

    _fields_ = (
        ("ipfw", ctypes.c_uint8 * 32),
        ("debugLevel", ctypes.c_uint8),
        ("loopTimeout", ctypes.c_uint32),
        ("maxStaleness", ctypes.c_uint32),
        ("minStableAge", ctypes.c_uint32),
    )


class NgBridgeLinkStats(ctypes.Structure):
    """``struct ng_bridge_link_stats { u_int64_t recvOctets; ... u_int64_t memoryFailures; };``
    (``<netgraph/ng_bridge.h>``), 14 counters, 112 bytes: the getstats reply."""

    _fields_ = (
        ("recvOctets", ctypes.c_uint64),
        ("recvPackets", ctypes.c_uint64),
        ("recvMulticasts", ctypes.c_uint64),
        ("recvBroadcasts", ctypes.c_uint64),
        ("recvUnknown", ctypes.c_uint64),
        ("recvRunts", ctypes.c_uint64),
        ("recvInvalid", ctypes.c_uint64),
        ("xmitOctets", ctypes.c_uint64),
        ("xmitPackets", ctypes.c_uint64),
        ("xmitMulticasts", ctypes.c_uint64),
        ("xmitBroadcasts", ctypes.c_uint64),
        ("loopDrops", ctypes.c_uint64),
        ("loopDetects", ctypes.c_uint64),
        ("memoryFailures", ctypes.c_uint64),
    )


class NgBridgeHostent(ctypes.Structure):
    """``struct ng_bridge_hostent { u_char addr[6]; char hook[NG_HOOKSIZ]; u_int16_t age;
    u_int16_t staleness; };`` (``<netgraph/ng_bridge.h>``), 42 bytes, aligned to 2."""

    _fields_ = (
        ("addr", ctypes.c_uint8 * ETHER_ADDR_LEN),
        ("hook", ctypes.c_char * NG_HOOKSIZ),
        ("age", ctypes.c_uint16),
        ("staleness", ctypes.c_uint16),
    )


class NgBridgeHostAry(ctypes.Structure):
    """``struct ng_bridge_host_ary { u_int32_t numHosts; struct ng_bridge_hostent hosts[]; };``
    (``<netgraph/ng_bridge.h>``), 4 bytes before 42-byte entries: the gettable reply."""

    _fields_ = (("numHosts", ctypes.c_uint32),)


class NgBridgeHostOld(ctypes.Structure):
    """``struct ng_bridge_host { u_char addr[6]; u_int16_t linkNum; u_int16_t age;
    u_int16_t staleness; };`` (``<netgraph/ng_bridge.h>`` of FreeBSD <= 12.1), 12 bytes."""

    _fields_ = (
        ("addr", ctypes.c_uint8 * ETHER_ADDR_LEN),
        ("linkNum", ctypes.c_uint16),
        ("age", ctypes.c_uint16),
        ("staleness", ctypes.c_uint16),
    )


class NgBridgeMoveHost(ctypes.Structure):
    """``struct ng_bridge_move_host { u_char addr[ETHER_ADDR_LEN]; char hook[NG_HOOKSIZ]; };``
    (``<netgraph/ng_bridge.h>``), 38 bytes: movehost."""

    _fields_ = (
        ("addr", ctypes.c_uint8 * ETHER_ADDR_LEN),
        ("hook", ctypes.c_char * NG_HOOKSIZ),
    )


class NgEifacePar(ctypes.Structure):
    """``struct ng_eiface_par { u_char oct0; ... u_char oct5; };`` (``<netgraph/ng_eiface.h>``,
    older trees; today a bare 6-byte MAC), 6 bytes: the NGM_EIFACE_SET argument."""

    _fields_ = (("addr", ctypes.c_uint8 * ETHER_ADDR_LEN),)


class NgEifaceIfname(ctypes.Structure):
    """``struct ng_eiface_ifname { char ngif_name[NG_EIFACE_EIFACE_NAME_MAX + 1]; };``
    (``<netgraph/ng_eiface.h>``, older trees; today ``char[IFNAMSIZ]``), 16 bytes: the
    getifname reply of ng_eiface and of ng_ether."""

    _fields_ = (("ngif_name", ctypes.c_char * IFNAMSIZ),)
