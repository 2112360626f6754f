"""vimaged-cni: a CNI plugin (spec 1.0.0 and 1.1.0) that puts sandboxes on vimaged's networks.

A thin client of the running daemon, like vimagectl: standard library only, fast start. The
runtime (containerd, CRI-O, Nomad, Podman) execs it with the verb in ``CNI_COMMAND`` and the
network configuration on stdin; it delegates IPAM to the plugin ``ipam.type`` and asks vimaged
over the control socket to create, check or remove the attachment. See docs/cni.md.
"""
