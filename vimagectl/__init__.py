"""vimagectl: the control client of vimaged."""
