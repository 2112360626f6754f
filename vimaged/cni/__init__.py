"""vimaged-cni's logic, in the daemon: the plugin (vimaged_cni/, or its C twin) is a pipe.

A runtime execs the plugin with the verb in ``CNI_COMMAND`` and the network configuration on
stdin; the plugin sends both whole in one ``cni_exec`` request and prints the ``cni_result``.
Here: :mod:`.spec` (the spec's versions, codes, environment and config checks), :mod:`.ipam`
(the IPAM plugin, run as the caller), :mod:`.verbs` (ADD, DEL, CHECK, GC, STATUS, VERSION over
:class:`vimaged.attachments.Attachments`). See docs/cni.md.
"""
