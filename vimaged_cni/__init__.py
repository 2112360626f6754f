"""vimaged-cni: a CNI plugin (spec 1.0.0 and 1.1.0) that puts sandboxes on vimaged's networks.

A pipe to the running daemon: standard library only, fast start. The runtime (containerd,
CRI-O, Nomad, Podman) execs it with the verb in ``CNI_COMMAND`` and the network configuration
on stdin; it hands both to vimaged in one ``cni_exec`` request and prints what the daemon
answers. The CNI logic (checks, IPAM delegation, results) runs in the daemon (vimaged/cni/); a
C program of the same behaviour (vimaged-cni.c) starts faster still. See docs/cni.md.
"""
